"""`contactpoint search`: a fuzzy search for a child, scored with the linkage model.

The probe (name, date of birth, postcode) is normalised like a feed record, its candidates are
found in the record index with the model's blocking rules plus broader ones for a probe that lacks
fields, and scored with the model's own SQL (as `engine.explain` does); each child keeps its best
record's probability. User text only ever reaches DuckDB as data (a registered Arrow table or a
bound parameter), and candidates are found by equality joins, so `%` and `_` are literal.

What a viewer sees:
- merged children never; archived children only by a data manager;
- a shielded child, to a practitioner: name, sex, date of birth, child ID and "contact the data
  manager", scored without the probe's postcode (so a guessed address cannot be confirmed).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import duckdb
import pyarrow as pa

from engine.candidates import record_columns_sql, with_term_frequencies_sql
from engine.governance.errors import GovernanceError
from engine.governance.policy import GovernancePolicy
from linkage_models.scoring import CompiledModel
from streams import normalise as norm
from streams.canonical import UPDATE_COLUMNS
from streams.names import standard_first_name

CONTACT_DATA_MANAGER = "contact the data manager"
# The ContactPoint basics a search shows, and what a shielded child shows instead.
FULL_VIEW: tuple[str, ...] = (
    "first_name", "middle_names", "surname", "preferred_first_name", "preferred_surname", "sex",
    "date_of_birth", "date_of_death", "address_line1", "address_line2", "town", "postcode",
    "nhs_number", "upn", "parent_forenames", "parent_surname", "school_urn", "gp_practice_code",
    "status",
)
SHIELDED_VIEW: tuple[str, ...] = ("first_name", "surname", "sex", "date_of_birth")
# Broader blocking for a probe without a complete key of the model's rules.
FALLBACK_BLOCKING_RULES: tuple[str, ...] = (
    "l.date_of_birth = r.date_of_birth",
    "l.first_name_std = r.first_name_std AND l.surname = r.surname",
    "l.surname = r.surname AND split_part(l.postcode, ' ', 1) = split_part(r.postcode, ' ', 1)",
)
_FULL, _RESTRICTED = "search:full", "search:restricted"
_PROBE_COLUMN = re.compile(r"\bl\.(\w+)")  # a rule's probe (left-hand) column
_PARAMETER = re.compile(r"\$(\w+)")
_PROBE_COLUMNS = ("unique_id", *UPDATE_COLUMNS)
_TEMP_TABLES = ("search_found", "search_rows", "search_pairs", "search_candidates",
                "search_probe_tf", "search_candidates_tf")


@dataclass(frozen=True)
class SearchProbe:
    """What the searcher knows, in canonical form."""

    first_name: str | None = None
    middle_names: str | None = None
    surname: str | None = None
    date_of_birth: str | None = None
    postcode: str | None = None

    def row(self, unique_id: str) -> dict[str, str | None]:
        """The probe as a model record (every canonical column, unique_id `unique_id`)."""
        row = dict.fromkeys(_PROBE_COLUMNS)
        row |= {"unique_id": unique_id, "feed": "search", "record_id": unique_id}
        row |= {
            "first_name": self.first_name, "middle_names": self.middle_names,
            "first_name_std": standard_first_name(self.first_name), "surname": self.surname,
            "date_of_birth": self.date_of_birth, "postcode": self.postcode,
        }
        return row


@dataclass(frozen=True)
class Viewer:
    """What the searching user may see."""

    sees_archived: bool
    sees_shielded: bool


def probe_from_inputs(
    name: str | None, date_of_birth: str | None, postcode: str | None
) -> SearchProbe:
    """The canonical probe: "first [middle…] last" (one word is a surname), a real date
    YYYY-MM-DD, a postcode. GovernanceError if nothing searchable is left.

    >>> probe_from_inputs("  oliver  o'brien ", "2009-03-01", "sw1a1aa")
    SearchProbe(first_name='OLIVER', middle_names=None, surname="O'BRIEN", \
date_of_birth='2009-03-01', postcode='SW1A 1AA')
    """
    words = (norm.name(name) or "").split()
    try:
        dob = norm.calendar_date(date_of_birth) if date_of_birth is not None else None
    except ValueError:
        raise GovernanceError("the date of birth must be a real date written YYYY-MM-DD") from None
    probe = SearchProbe(
        first_name=words[0] if len(words) > 1 else None,
        middle_names=" ".join(words[1:-1]) or None,
        surname=words[-1] if words else None,
        date_of_birth=dob,
        postcode=norm.postcode(postcode),
    )
    if probe == SearchProbe():
        raise GovernanceError("give a name, a date of birth or a postcode to search on")
    return probe


def viewer_for(role: str) -> Viewer:
    """What a user of `role` may see: a data manager sees archived and shielded children."""
    is_manager = role == "data_manager"
    return Viewer(sees_archived=is_manager, sees_shielded=is_manager)


def search_children(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, probe: SearchProbe, viewer: Viewer,
    limit: int, policy: GovernancePolicy,
) -> list[dict]:
    """The children matching `probe` best first (at most `limit`; the probe's evidence for each
    at least the policy's least Bayes factor), each as the viewer may see it: child_id,
    match_probability, shielded and the FULL_VIEW fields, or for a shielded child the
    SHIELDED_VIEW fields and a `contact`."""
    rules = searchable_rules(probe, model.blocking_rules)
    restricted = probe if viewer.sees_shielded else replace(probe, postcode=None)
    restricted_known = _known_columns(restricted)
    restricted_rules = [rule for rule in rules if _probe_columns(rule) <= restricted_known]
    con.register("search_probe", pa.Table.from_pylist(
        [probe.row(_FULL), restricted.row(_RESTRICTED)],
        schema=pa.schema([(c, pa.string()) for c in _PROBE_COLUMNS]),
    ))
    try:
        _find_candidates(con, model, probe, rules, restricted_rules, viewer,
                         policy.max_candidate_pairs)
        best = _best_per_child(con, model, limit, _least_match_weight(model, policy))
        return _shown(con, best, viewer)
    finally:
        for table in _TEMP_TABLES:
            con.execute(f"DROP TABLE IF EXISTS {table}")
        con.unregister("search_probe")


def searchable_rules(probe: SearchProbe, model_rules: Sequence[str]) -> list[str]:
    """The blocking rules (the model's, then the fallbacks) whose every probe column is known;
    GovernanceError if there is none."""
    known = _known_columns(probe)
    rules = [
        rule for rule in (*model_rules, *FALLBACK_BLOCKING_RULES)
        if _probe_columns(rule) <= known
    ]
    if not rules:
        raise GovernanceError(
            "too little to search on: give a date of birth, a first name and surname, "
            "or a surname and postcode"
        )
    return rules


def _find_candidates(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, probe: SearchProbe, rules: list[str],
    restricted_rules: list[str], viewer: Viewer, max_pairs: int,
) -> None:
    """Temp tables `search_pairs` (probe row, record) and `search_candidates` (the records).
    Each rule becomes a filter on the record index with the probe's values bound as parameters
    (`l.surname = r.surname` -> `$surname = r.surname`): first the row ids of the records the
    probe would join by any rule (a scan of the filtered columns only), then those rows' model
    columns, then their children. A shielded child a viewer may not see in full is paired with
    the restricted probe, and found only by the rules it still allows."""
    allowed_restricted = " OR ".join(_filters(restricted_rules)) or "false"
    found = "\nUNION\n".join(
        f"SELECT r.rowid AS row_id, ({allowed_restricted}) AS allowed_restricted "
        f"FROM records r WHERE {rule_filter}"
        for rule_filter in _filters(rules)
    )
    values = probe.row(_FULL)
    con.execute(f"CREATE OR REPLACE TEMP TABLE search_found AS {found}",
                {column: values[column] for column in set(_PARAMETER.findall(found))})
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE search_rows AS
        SELECT r.child_id, {record_columns_sql(model, "r")}, f.allowed_restricted
        FROM records r JOIN search_found f ON r.rowid = f.row_id
    """)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE search_pairs AS
        SELECT CASE WHEN c.shielded AND NOT $sees_shielded THEN '{_RESTRICTED}'
                    ELSE '{_FULL}' END AS unique_id_l,
               f.unique_id AS unique_id_r
        FROM search_rows f JOIN children c ON c.child_id = f.child_id
        WHERE c.status <> 'merged' AND (c.archived_on IS NULL OR $sees_archived)
          AND (NOT c.shielded OR $sees_shielded OR f.allowed_restricted)
        """,
        {"sees_archived": viewer.sees_archived, "sees_shielded": viewer.sees_shielded},
    )
    pairs = con.execute("SELECT count(*) FROM search_pairs").fetchall()[0][0]
    if pairs > max_pairs:
        raise GovernanceError(
            f"too broad: {pairs:,} candidate records (limit {max_pairs:,}); "
            "add a date of birth, a full name or a postcode"
        )
    con.execute("""
        CREATE OR REPLACE TEMP TABLE search_candidates AS
        SELECT * EXCLUDE (allowed_restricted) FROM search_rows
        WHERE unique_id IN (SELECT unique_id_r FROM search_pairs)
    """)


def _known_columns(probe: SearchProbe) -> set[str]:
    known = {column for column, value in probe.row(_FULL).items() if value is not None}
    return known - {"feed", "record_id", "unique_id"}


def _probe_columns(rule: str) -> set[str]:
    """The probe (left-hand) columns a blocking rule reads."""
    return set(_PROBE_COLUMN.findall(rule))


def _filters(rules: list[str]) -> list[str]:
    """The rules as filters on records `r`, the probe's columns as named parameters. A rule
    whose conditions include all of another rule's finds nothing more: it is left out."""
    conditions = {rule: frozenset(rule.split(" AND ")) for rule in rules}
    broadest = [rule for rule in rules
                if not any(other < conditions[rule] for other in conditions.values())]
    return ["(" + _PROBE_COLUMN.sub(r"$\1", rule) + ")" for rule in dict.fromkeys(broadest)]


def _least_match_weight(model: CompiledModel, policy: GovernancePolicy) -> float:
    """The match weight at which the probe's evidence is the policy's least Bayes factor
    (a match weight is the prior's log2 odds plus the log2 Bayes factors of the fields)."""
    prior = model.probability_two_random_records_match
    return math.log2(prior / (1 - prior)) + math.log2(policy.min_bayes_factor)


def _best_per_child(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, limit: int, least_weight: float
) -> list[tuple[str, float]]:
    """(child_id, best probability of its records), best first."""
    for table in ("search_probe", "search_candidates"):
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table}_tf AS {with_term_frequencies_sql(model, table)}"
        )
    scores = model.score_sql("search_probe_tf", "search_candidates_tf", "search_pairs")
    return con.execute(
        f"""
        SELECT r.child_id, max(s.match_probability) AS probability
        FROM ({scores}) s JOIN search_candidates r ON r.unique_id = s.unique_id_r
        GROUP BY r.child_id HAVING max(s.match_weight) >= ?
        ORDER BY max(s.match_weight) DESC, r.child_id LIMIT ?
        """,
        [least_weight, limit],
    ).fetchall()


def _shown(
    con: duckdb.DuckDBPyConnection, best: list[tuple[str, float]], viewer: Viewer
) -> list[dict]:
    """Each hit as the viewer may see it, in the order of `best`."""
    columns = ", ".join(FULL_VIEW)
    rows = con.execute(
        f"SELECT child_id, shielded, archived_on, {columns} FROM children "
        "WHERE child_id IN (SELECT unnest(?::VARCHAR[]))",
        [[child_id for child_id, _ in best]],
    ).fetchall()
    by_child = {row[0]: row for row in rows}
    return [_hit(by_child[child_id], probability, viewer) for child_id, probability in best]


def _hit(row: tuple, probability: float, viewer: Viewer) -> dict:
    return {"match_probability": round(probability, 6)} | _as_seen(row, viewer)


def child_view(con: duckdb.DuckDBPyConnection, child_id: str, viewer: Viewer) -> dict:
    """One child as the viewer may see them (a merged child's survivor), with the feeds that
    know the child (and, to a viewer who sees everything, their records); GovernanceError if
    there is no such child for this viewer."""
    columns = ", ".join(FULL_VIEW)
    rows = con.execute(
        f"""
        WITH RECURSIVE chain(child_id, depth) AS (
            SELECT ?, 0
            UNION ALL
            SELECT c.merged_into, chain.depth + 1 FROM chain JOIN children c USING (child_id)
            WHERE c.status = 'merged' AND c.merged_into IS NOT NULL AND chain.depth < 100
        )
        SELECT child_id, shielded, archived_on, {columns} FROM children
        WHERE child_id = (SELECT child_id FROM chain ORDER BY depth DESC LIMIT 1)
          AND status <> 'merged' AND (archived_on IS NULL OR ?)
        """,
        [child_id, viewer.sees_archived],
    ).fetchall()
    if not rows:
        raise GovernanceError("no such child (or not one you may see)")
    view = _as_seen(rows[0], viewer)
    if "contact" in view:
        return view
    records = con.execute(
        "SELECT feed, record_id, decision FROM links WHERE child_id = ? ORDER BY feed, record_id",
        [view["child_id"]],
    ).fetchall()
    view["known_to"] = sorted({feed for feed, _, _ in records})
    if viewer.sees_shielded:
        view["records"] = [{"feed": f, "record_id": r, "decision": d} for f, r, d in records]
    return view


def _as_seen(row: tuple, viewer: Viewer) -> dict:
    """A children row (child_id, shielded, archived_on, FULL_VIEW…) as the viewer may see it."""
    child_id, shielded, archived_on, *values = row
    fields = dict(zip(FULL_VIEW, values, strict=True))
    seen: dict = {"child_id": child_id, "shielded": shielded}
    if shielded and not viewer.sees_shielded:
        return seen | {name: fields[name] for name in SHIELDED_VIEW} | {
            "contact": CONTACT_DATA_MANAGER}
    seen |= fields
    if archived_on is not None:
        seen["archived_on"] = archived_on.isoformat()
    return seen
