"""Golden-record survivorship: each child's fields recomputed from all its records, set-based.

Two rules, chosen per field in `SurvivorshipConfig`:

- *trusted*: the value from the most trusted source (`source_trust`: GRO > NHS > census > DWP by
  default), the most recent event among equals — for identity fields (forename, sex, DOB, NHS no.);
- *latest*: the value of the most recent event, the more trusted source among equal times — for
  fields that really change (surname after a change of name, address, school, GP, contact).

Because the golden record is recomputed from the record index, an update older than what a child
already holds never overwrites newer values, whatever order the feeds deliver in. Each field's
provenance (`feed:record_id` it came from) is kept in `children.provenance`. A death record sets
`status = 'deceased'`.
"""

from __future__ import annotations

from engine.config import SurvivorshipConfig
from engine.master_store import GOLDEN_FIELDS


def golden_upsert_sqls(config: SurvivorshipConfig, affected_table: str) -> list[str]:
    """Statements recomputing the golden record of every child in `affected_table(child_id)`.

    Delete-and-insert rather than `ON CONFLICT DO UPDATE`: DuckDB's upsert of a few thousand
    wide rows costs seconds, the delete and insert milliseconds. What is not derived from records
    (created_at, shielding, a status such as archived, any other column) is carried over.
    """
    return [
        f"CREATE OR REPLACE TEMP TABLE golden AS {_golden_select_sql(config, affected_table)}",
        "CREATE OR REPLACE TEMP TABLE previous_children AS "
        "SELECT * FROM children WHERE child_id IN (SELECT child_id FROM golden)",
        "DELETE FROM children WHERE child_id IN (SELECT child_id FROM golden)",
        f"""
        INSERT INTO children BY NAME
        SELECT
            g.* EXCLUDE (status),
            p.* EXCLUDE (child_id, {", ".join(GOLDEN_FIELDS)}, provenance, status, shielded,
                         created_at, updated_at),
            CASE WHEN p.status IN ({", ".join(f"'{s}'" for s in DERIVED_STATUSES)})
                      OR p.status IS NULL
                 THEN g.status ELSE p.status END AS status,
            coalesce(p.shielded, false) AS shielded,
            coalesce(p.created_at, now()) AS created_at,
            now() AS updated_at
        FROM golden g LEFT JOIN previous_children p USING (child_id)
        """,
    ]


# Statuses the records decide; any other (e.g. archived) is kept as it is.
DERIVED_STATUSES = ("active", "deceased")


def _golden_select_sql(config: SurvivorshipConfig, affected_table: str) -> str:
    trust_cases = " ".join(
        f"WHEN '{feed}' THEN {rank}" for feed, rank in sorted(config.source_trust.items())
    )
    trust = f"(CASE r.feed {trust_cases} ELSE 0 END)::VARCHAR"
    orders = {name: f"{trust} || r.event_time" for name in config.trusted_fields}
    orders |= {name: f"r.event_time || {trust}" for name in config.latest_fields}
    missing = set(GOLDEN_FIELDS) - set(orders)
    if missing:
        raise ValueError(f"survivorship has no rule for {sorted(missing)}")
    # One arg_max per field over a {value, source record} struct: the value and its provenance.
    picks = ",\n            ".join(
        f"arg_max({{'v': r.{name}, 's': r.unique_id}}, {orders[name]}) "
        f"FILTER (WHERE r.{name} IS NOT NULL) AS {name}"
        for name in GOLDEN_FIELDS
    )
    values = ", ".join(f"{name}.v AS {name}" for name in GOLDEN_FIELDS)
    field_names = ", ".join(f"'{name}'" for name in GOLDEN_FIELDS)
    sources = ", ".join(f"{name}.s" for name in GOLDEN_FIELDS)
    return f"""
    SELECT
        child_id,
        {values},
        map_from_entries(list_filter(
            list_zip([{field_names}], [{sources}]), lambda e: e[2] IS NOT NULL
        )) AS provenance,
        status
    FROM (
        SELECT
            r.child_id,
            {picks},
            CASE WHEN bool_or(r.event = 'death' OR r.date_of_death IS NOT NULL)
                 THEN 'deceased' ELSE 'active' END AS status
        FROM records r
        WHERE r.child_id IN (SELECT child_id FROM {affected_table})
        GROUP BY r.child_id
    )
    """
