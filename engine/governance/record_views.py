"""`explain` and `evaluate` as views of children: performed as audited acts, following the
viewer's role like a search does.

- explain: a record of a child the viewer may not see in full (shielded, or archived, to a
  practitioner) is refused ("contact the data manager"); such children are left out of the
  candidates, and the waterfall is left out when it is against one of them.
- evaluate: reads every child's links (and with a sweep every record), so it is a data
  manager's act.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import duckdb

from engine.explain import Explanation, RecordNotFound, explain_record
from engine.governance.errors import AccessRefused, GovernanceError
from engine.governance.search import CONTACT_DATA_MANAGER, Viewer
from linkage_models.evaluation import evaluate_links, threshold_sweep
from linkage_models.scoring import DEFAULT_MODEL_PATH, CompiledModel, ModelError


def explain_for(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, record: str, viewer: Viewer
) -> Explanation:
    """The explanation of `record` (FEED:RECORD_ID) as `viewer` may see it."""
    feed, sep, record_id = record.partition(":")
    if not sep or not record_id:
        raise GovernanceError("expected FEED:RECORD_ID, e.g. nhs:000123")
    try:
        explanation = explain_record(con, model, feed, record_id)
    except RecordNotFound as err:
        raise GovernanceError(str(err)) from err
    children = [explanation.decision["child_id"], *(c.child_id for c in explanation.candidates)]
    hidden = _hidden_children(con, children, viewer)
    if explanation.decision["child_id"] in hidden:
        raise AccessRefused(f"that record belongs to a restricted child: {CONTACT_DATA_MANAGER}")
    candidates = [c for c in explanation.candidates if c.child_id not in hidden]
    against_hidden = bool(explanation.candidates) and explanation.candidates[0].child_id in hidden
    return replace(explanation, candidates=candidates,
                   steps=[] if against_hidden else explanation.steps)


def evaluate(
    con: duckdb.DuckDBPyConnection, truth: str, sweep_html: str | None, model_path: str | None
) -> dict:
    """Pairwise accuracy of the master against the truth file; with `sweep_html`, also the
    threshold sweep of every blocked record pair, written as an offline HTML chart."""
    truth_csv = Path(truth)
    if not truth_csv.is_file():
        raise GovernanceError(f"truth file {truth_csv} does not exist")
    try:
        result = evaluate_links(con, truth_csv).to_dict()
        if sweep_html:
            records = con.sql("SELECT * EXCLUDE (child_id) FROM records").to_arrow_table()
            model = Path(model_path) if model_path else DEFAULT_MODEL_PATH
            result["sweep"] = threshold_sweep(records, truth_csv, model, Path(sweep_html)).to_dict()
    except ModelError as err:
        raise GovernanceError(str(err)) from err
    return result


def _hidden_children(
    con: duckdb.DuckDBPyConnection, child_ids: list[str], viewer: Viewer
) -> set[str]:
    """Those of `child_ids` the viewer may not see in full."""
    rows = con.execute(
        """
        SELECT child_id FROM children WHERE child_id IN (SELECT unnest(?::VARCHAR[]))
          AND ((shielded AND NOT ?) OR (archived_on IS NOT NULL AND NOT ?))
        """,
        [child_ids, viewer.sees_shielded, viewer.sees_archived],
    ).fetchall()
    return {row[0] for row in rows}
