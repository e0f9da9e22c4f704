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
import numpy as np
import pyarrow as pa

from engine.candidates import with_term_frequencies_sql
from engine.governance.errors import GovernanceError
from engine.governance.policy import GovernancePolicy
from engine.governance.search_index import (
    catch_up_if_far_behind,
    child_rows_of,
    ensure_search_index,
    indexed_up_to_sql,
    lookup_sql,
    probe_keys_sql,
)
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
# What a list of results shows (the web application's results page, `brief`): a child's row is
# read for these alone, since each column read costs a block decompressed per child shown.
LIST_VIEW: tuple[str, ...] = (*SHIELDED_VIEW, "postcode")
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
class Score:
    """A candidate record's score under one of the probes (`_FULL` or `_RESTRICTED`)."""

    probe: str
    record_no: int
    match_weight: float
    match_probability: float

    @property
    def evidence(self) -> tuple[float, float]:
        """What ranks it: the weight, then the probability."""
        return self.match_weight, self.match_probability


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
    limit: int, policy: GovernancePolicy, fields: tuple[str, ...] = FULL_VIEW,
) -> list[dict]:
    """The children matching `probe` best first (at most `limit`; the probe's evidence for each
    at least the policy's least Bayes factor), each as the viewer may see it: child_id,
    match_probability, shielded and the `fields` (FULL_VIEW, or LIST_VIEW for a list of
    results), or for a shielded child the SHIELDED_VIEW fields and a `contact`."""
    rules = searchable_rules(probe, model.blocking_rules)
    restricted = probe if viewer.sees_shielded else replace(probe, postcode=None)
    restricted_known = _known_columns(restricted)
    restricted_rules = [rule for rule in rules if _probe_columns(rule) <= restricted_known]
    con.register("search_probe", pa.Table.from_pylist(
        [probe.row(_FULL), restricted.row(_RESTRICTED)],
        schema=pa.schema([(c, pa.string()) for c in _PROBE_COLUMNS]),
    ))
    try:
        _find_candidates(con, model, probe, rules, restricted_rules, policy.max_candidate_pairs)
        # without a postcode the restricted probe is the probe: one score per candidate
        withheld = restricted != probe
        scores = _score_candidates(con, model, withheld, _least_match_weight(model, policy))
        return _best_children(con, scores, viewer, withheld, limit, fields)
    finally:
        con.execute("DROP TABLE IF EXISTS search_candidates")
        con.unregister("search_probe")


def prepare_search_index(con: duckdb.DuckDBPyConnection, model: CompiledModel) -> None:
    """Before a search's transaction: build the search index if there is none, or bring it up
    to date if it is far behind the record index (a search reads a short tail of records not
    in it yet itself)."""
    catch_up_if_far_behind(con, model, index_rules(model.blocking_rules))


def keep_search_index(con: duckdb.DuckDBPyConnection, model: CompiledModel) -> None:
    """The search index's upkeep (the engine's service, in the background): add the records
    appended since, and sort it again when they are many."""
    ensure_search_index(con, model, index_rules(model.blocking_rules))


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


def index_rules(model_rules: Sequence[str]) -> list[str]:
    """The rules the search index keys: of the model's rules and the fallbacks a probe can
    use, those no other such rule's conditions are a part of (a probe that can use such a rule
    can use the smaller one too, which finds every record the larger one would)."""
    probe_columns = set(SearchProbe.__dataclass_fields__) | {"first_name_std"}
    usable = [rule for rule in (*model_rules, *FALLBACK_BLOCKING_RULES)
              if _probe_columns(rule) <= probe_columns]
    return _broadest(usable)


def _find_candidates(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, probe: SearchProbe, rules: list[str],
    restricted_rules: list[str], max_pairs: int,
) -> None:
    """Temp table `search_candidates`: the model columns and `record_no` of every record the
    probe would join by any of `rules`, and whether it joins by one of `restricted_rules` (what
    a shielded child a viewer may not see in full may be found by), looked up by key in the
    search index (engine.governance.search_index; `prepare_search_index` brings it up to date).
    GovernanceError if there are more than `max_pairs`."""
    keyed = index_rules(model.blocking_rules)
    numbers = {keyed.index(rule): rule for rule in _broadest(rules)}
    restricted = [keyed.index(rule) for rule in _broadest(restricted_rules)] or [-1]
    *keys, indexed_up_to = con.execute(
        probe_keys_sql(keyed, list(numbers), "search_probe", indexed_up_to_sql())
        + f" WHERE unique_id = '{_FULL}'").fetchall()[0]
    found = lookup_sql(model, {number: (key, _filter(rule))
                               for (number, rule), key in zip(numbers.items(), keys, strict=True)},
                       indexed_up_to)
    values = probe.row(_FULL)
    parameters = {column: values[column] for column in set(_PARAMETER.findall(found))}
    candidates = con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE search_candidates AS
        WITH found AS MATERIALIZED ({found}),
        allowed AS (
            SELECT DISTINCT record_no FROM found
            WHERE rule_no IN ({', '.join(map(str, restricted))})
        )
        SELECT DISTINCT ON (f.record_no) f.* EXCLUDE (rule_no),
               f.record_no IN (SELECT record_no FROM allowed) AS allowed_restricted
        FROM found f
        """,
        parameters,
    ).fetchall()[0][0]  # the rows it holds
    if candidates > max_pairs:
        raise GovernanceError(
            f"too broad: {candidates:,} candidate records (limit {max_pairs:,}); "
            "add a date of birth, a full name or a postcode"
        )


def _score_candidates(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, withheld: bool, least_weight: float
) -> list[Score]:
    """Every candidate scored against the full probe and, if the restricted probe withholds
    something (`withheld`), each candidate a restricted rule found against the restricted probe
    too (which of the two counts depends on the record's child); only scores of at least
    `least_weight`, which alone can make a child a hit."""
    # one statement: each call waits for the interpreter again while the engine's batches run,
    # and a temporary table for each step costs more than planning it as a part of one query
    pairs = f"""
        SELECT '{_FULL}' AS unique_id_l, unique_id AS unique_id_r FROM search_candidates
        UNION ALL
        SELECT '{_RESTRICTED}', unique_id FROM search_candidates
        WHERE allowed_restricted AND {str(withheld).lower()}"""
    scores = model.score_sql("search_probe_tf", "search_candidates_tf", "search_pairs",
                             weights_only=True)
    kept = con.execute(
        f"""
        WITH search_pairs AS MATERIALIZED ({pairs}),
        search_probe_tf AS MATERIALIZED ({with_term_frequencies_sql(model, "search_probe")}),
        search_candidates_tf AS MATERIALIZED (
            {with_term_frequencies_sql(model, "search_candidates")})
        SELECT s.unique_id_l AS probe, c.record_no, s.match_weight, s.match_probability
        FROM ({scores}) s JOIN search_candidates c ON c.unique_id = s.unique_id_r
        WHERE s.match_weight >= ?
        """,
        [least_weight],
    ).fetchall()
    return [Score(*row) for row in kept]


def _best_children(
    con: duckdb.DuckDBPyConnection, scores: list[Score], viewer: Viewer, withheld: bool,
    limit: int, fields: tuple[str, ...],
) -> list[dict]:
    """Each child of `scores` that the viewer may see, with the best probability of its records
    under the probe that applies to it (the restricted one for a shielded child, if it
    withholds something), best first, as the viewer may see them. Run in a transaction (row
    ids hold within one)."""
    # first the kept records' children (by record_no: records lie in that order), then their
    # rows and shields, by `row_no` where the engine's service knows which rows those are
    # (search_index.ChildRows), else by the child_id column alone (a scan of it: a join of the
    # two reads every child), then the shown children's `fields` by row id: reading the
    # columns while filtering by child_id costs 4x as much on a million children, and only
    # `limit` children are shown. By row_no, kept children few enough to be shown all are read
    # in full at once.
    kept = con.execute(
        "SELECT record_no, child_id, hash(child_id) FROM records "
        "WHERE record_no IN (SELECT unnest(?::BIGINT[]))",
        [sorted({score.record_no for score in scores})],
    ).fetchall()
    child_of = {record_no: child_id for record_no, child_id, _ in kept}
    column, keys = _children_keys(con, kept)  # the child ids, or the rows that may be theirs
    at_once = column == "row_no" and len(set(child_of.values())) <= limit
    shown = f"child_id, shielded, archived_on, {', '.join(fields)}"
    # child_id -> (rowid, child_id, shielded[, archived_on, fields…])
    seen = {row[1]: row for row in con.execute(
        f"""
        SELECT rowid, {shown if at_once else "child_id, shielded"} FROM children
        WHERE {column} IN (SELECT unnest($keys)) AND status <> 'merged'
          AND (archived_on IS NULL OR $sees_archived)
        """,
        {"keys": keys, "sees_archived": viewer.sees_archived},
    ).fetchall()}
    best: dict[str, tuple[float, float]] = {}
    for score in scores:
        child_id = child_of.get(score.record_no)
        if child_id not in seen or score.probe != _probe_for(seen[child_id][2], withheld):
            continue
        best[child_id] = max(best.get(child_id, score.evidence), score.evidence)
    ranked = sorted(best, key=lambda child_id: (-best[child_id][0], child_id))[:limit]
    if not at_once:
        seen = {row[1]: row for row in con.execute(
            f"SELECT rowid, {shown} FROM children WHERE rowid IN (SELECT unnest(?::BIGINT[]))",
            [sorted(seen[child_id][0] for child_id in ranked)],
        ).fetchall()}
    return [_hit(seen[child_id][1:], best[child_id][1], viewer, fields) for child_id in ranked]


def _children_keys(con: duckdb.DuckDBPyConnection, kept: list[tuple]) -> tuple[str, list]:
    """How to find the rows of the children of `kept` ((record_no, child_id, hash(child_id))
    rows): (`row_no`, the numbers that may be theirs) where the cursor has a ChildRows (rows of
    other children may come with them: only the kept children's rows are ever looked up), else
    (`child_id`, their ids)."""
    rows = child_rows_of(con)
    if rows is None:
        return "child_id", sorted({child_id for _, child_id, _ in kept})
    keys = np.array([key for *_, key in kept], np.uint64)
    return "row_no", np.unique(rows.row_numbers(con, keys)).astype(np.int64).tolist()


def _probe_for(shielded: bool, withheld: bool) -> str:
    """Which probe a child is scored with: the restricted one for a shielded child, if the
    restricted probe withholds something from this viewer."""
    return _RESTRICTED if shielded and withheld else _FULL


def _known_columns(probe: SearchProbe) -> set[str]:
    known = {column for column, value in probe.row(_FULL).items() if value is not None}
    return known - {"feed", "record_id", "unique_id"}


def _probe_columns(rule: str) -> set[str]:
    """The probe (left-hand) columns a blocking rule reads."""
    return set(_PROBE_COLUMN.findall(rule))


def _broadest(rules: Sequence[str]) -> list[str]:
    """The rules but those whose conditions include all of another rule's: such a rule finds
    nothing more."""
    conditions = {rule: frozenset(rule.split(" AND ")) for rule in rules}
    return list(dict.fromkeys(
        rule for rule in rules
        if not any(other < conditions[rule] for other in conditions.values())
    ))


def _filter(rule: str) -> str:
    """A rule as a filter on records `r`, the probe's columns as named parameters
    (`l.surname = r.surname` -> `$surname = r.surname`)."""
    return "(" + _PROBE_COLUMN.sub(r"$\1", rule) + ")"


def _least_match_weight(model: CompiledModel, policy: GovernancePolicy) -> float:
    """The match weight at which the probe's evidence is the policy's least Bayes factor
    (a match weight is the prior's log2 odds plus the log2 Bayes factors of the fields)."""
    prior = model.probability_two_random_records_match
    return math.log2(prior / (1 - prior)) + math.log2(policy.min_bayes_factor)


def _hit(row: tuple, probability: float, viewer: Viewer, fields: tuple[str, ...]) -> dict:
    return {"match_probability": round(probability, 6)} | _as_seen(row, viewer, fields)


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


def _as_seen(row: tuple, viewer: Viewer, names: tuple[str, ...] = FULL_VIEW) -> dict:
    """A children row (child_id, shielded, archived_on, then the `names` columns, which hold
    SHIELDED_VIEW's) as the viewer may see it."""
    child_id, shielded, archived_on, *values = row
    fields = dict(zip(names, values, strict=True))
    seen: dict = {"child_id": child_id, "shielded": shielded}
    if shielded and not viewer.sees_shielded:
        return seen | {name: fields[name] for name in SHIELDED_VIEW} | {
            "contact": CONTACT_DATA_MANAGER}
    seen |= fields
    if archived_on is not None:
        seen["archived_on"] = archived_on.isoformat()
    return seen
