"""Golden-record survivorship: records placed in children are folded into their golden records.

Two rules, chosen per field in `SurvivorshipConfig`:

- *trusted*: the value from the most trusted source (`source_trust`: GRO > NHS > census > DWP by
  default), the most recent event among equals — for identity fields (forename, sex, DOB, NHS no.);
- *latest*: the value of the most recent event, the more trusted source among equal times — for
  fields that really change (surname after a change of name, address, school, GP, contact).

Each rule is an order key per value (`trust || event_time || unique_id`, or `event_time || trust ||
unique_id`); a child's golden value is its records' value with the greatest key. Because the
greatest key of all records is the greatest of (the child's current winner, the records placed
since), a refresh reads only the records waiting in `golden_pending` and those children's current
rows, never a child's whole history, and an update older than what a child holds can never
overwrite newer values, whatever order the feeds deliver in. A merge folds the merged child's row
into the survivor the same way.

Each field's provenance (the `feed:record_id` it came from) is kept in `children.provenance`, its
order key in `children.survivorship_keys` (both structs with one member per golden field). A death
record sets `status = 'deceased'`.
"""

from __future__ import annotations

from engine.config import SurvivorshipConfig
from engine.master_store import GOLDEN_FIELDS

# Statuses the records decide; any other (e.g. archived) is kept as it is.
DERIVED_STATUSES = ("active", "deceased")


def golden_refresh_sqls(config: SurvivorshipConfig, merged: str) -> list[str]:
    """Statements folding every record in `golden_pending(unique_id)` into its child's golden
    record, then emptying `golden_pending`. `merged(merged, survivor)`: children merged since.

    Delete-and-insert rather than `ON CONFLICT DO UPDATE`: DuckDB's upsert of a few thousand
    wide rows costs seconds, the delete and insert milliseconds. What records do not decide
    (created_at, shielding, a status such as archived, any other column) is carried over from
    the child's previous row.
    """
    keys = _order_keys(config)
    return [
        "CREATE OR REPLACE TEMP TABLE golden_records AS SELECT * FROM records "
        "WHERE unique_id IN (SELECT unique_id FROM golden_pending)",
        f"""
        CREATE OR REPLACE TEMP TABLE golden_candidates AS
        {_incoming_candidates_sql(keys)}
        UNION ALL BY NAME
        {_current_candidates_sql(merged)}
        """,
        f"CREATE OR REPLACE TEMP TABLE golden AS {_fold_sql()}",
        "CREATE OR REPLACE TEMP TABLE previous_children AS "
        "SELECT * FROM children WHERE child_id IN (SELECT child_id FROM golden)",
        "DELETE FROM children WHERE child_id IN (SELECT child_id FROM golden)",
        f"""
        INSERT INTO children BY NAME
        SELECT
            g.* EXCLUDE (status),
            p.* EXCLUDE (child_id, {", ".join(GOLDEN_FIELDS)}, provenance, survivorship_keys,
                         status, shielded, created_at, updated_at),
            CASE WHEN p.status IN ({", ".join(f"'{s}'" for s in DERIVED_STATUSES)})
                      OR p.status IS NULL
                 THEN g.status ELSE p.status END AS status,
            coalesce(p.shielded, false) AS shielded,
            coalesce(p.created_at, now()) AS created_at,
            now() AS updated_at
        FROM golden g LEFT JOIN previous_children p USING (child_id)
        """,
        "DELETE FROM golden_pending",
    ]


def _order_keys(config: SurvivorshipConfig) -> dict[str, str]:
    """Per golden field, the SQL of its order key over a record `r`."""
    trust_cases = " ".join(
        f"WHEN '{feed}' THEN {rank}" for feed, rank in sorted(config.source_trust.items())
    )
    trust = f"(CASE r.feed {trust_cases} ELSE 0 END)::VARCHAR"
    keys = {name: f"{trust} || r.event_time || r.unique_id" for name in config.trusted_fields}
    keys |= {name: f"r.event_time || {trust} || r.unique_id" for name in config.latest_fields}
    missing = set(GOLDEN_FIELDS) - set(keys)
    if missing:
        raise ValueError(f"survivorship has no rule for {sorted(missing)}")
    return keys


def _incoming_candidates_sql(keys: dict[str, str]) -> str:
    """The waiting records, each field with its source record and order key."""
    columns = ", ".join(
        f"r.{name}, r.unique_id AS s_{name}, {keys[name]} AS k_{name}" for name in GOLDEN_FIELDS
    )
    return f"""
        SELECT r.child_id, {columns},
               r.event = 'death' OR r.date_of_death IS NOT NULL AS died
        FROM golden_records r
    """


def _current_candidates_sql(merged: str) -> str:
    """The current rows of those children, and of children merged into them."""
    columns = ", ".join(
        f"c.{name}, c.provenance.{name} AS s_{name}, c.survivorship_keys.{name} AS k_{name}"
        for name in GOLDEN_FIELDS
    )
    return f"""
        SELECT coalesce(m.survivor, c.child_id) AS child_id, {columns},
               c.status = 'deceased' AS died
        FROM children c LEFT JOIN {merged} m ON m.merged = c.child_id
        WHERE c.child_id IN (SELECT child_id FROM golden_records)
           OR c.child_id IN (SELECT merged FROM {merged})
    """


def _fold_sql() -> str:
    """Each child's greatest-key value per field, with its provenance and key."""
    picks = ",\n            ".join(
        f"arg_max({{'v': {name}, 's': s_{name}, 'k': k_{name}}}, k_{name}) "
        f"FILTER (WHERE {name} IS NOT NULL) AS {name}"
        for name in GOLDEN_FIELDS
    )
    values = ", ".join(f"{name}.v AS {name}" for name in GOLDEN_FIELDS)
    sources = ", ".join(f"'{name}': {name}.s" for name in GOLDEN_FIELDS)
    order_keys = ", ".join(f"'{name}': {name}.k" for name in GOLDEN_FIELDS)
    return f"""
    SELECT
        child_id,
        {values},
        {{{sources}}} AS provenance,
        {{{order_keys}}} AS survivorship_keys,
        CASE WHEN died THEN 'deceased' ELSE 'active' END AS status
    FROM (
        SELECT child_id, {picks}, bool_or(died) AS died
        FROM golden_candidates
        GROUP BY child_id
    )
    """

