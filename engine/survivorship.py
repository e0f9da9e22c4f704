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


def golden_upsert_sql(config: SurvivorshipConfig, affected_table: str) -> str:
    """SQL recomputing the golden record of every child listed in `affected_table(child_id)`."""
    trust_cases = " ".join(
        f"WHEN '{feed}' THEN {rank}" for feed, rank in sorted(config.source_trust.items())
    )
    trust = f"(CASE r.feed {trust_cases} ELSE 0 END)::VARCHAR"
    orders = {name: f"{trust} || r.event_time" for name in config.trusted_fields}
    orders |= {name: f"r.event_time || {trust}" for name in config.latest_fields}
    missing = set(GOLDEN_FIELDS) - set(orders)
    if missing:
        raise ValueError(f"survivorship has no rule for {sorted(missing)}")
    values = ",\n        ".join(
        f"arg_max(r.{name}, {orders[name]}) FILTER (WHERE r.{name} IS NOT NULL) AS {name}"
        for name in GOLDEN_FIELDS
    )
    sources = ", ".join(
        f"arg_max(r.unique_id, {orders[name]}) FILTER (WHERE r.{name} IS NOT NULL)"
        for name in GOLDEN_FIELDS
    )
    field_names = ", ".join(f"'{name}'" for name in GOLDEN_FIELDS)
    updates = ",\n        ".join(f"{name} = excluded.{name}" for name in GOLDEN_FIELDS)
    return f"""
    INSERT INTO children BY NAME
    SELECT
        r.child_id,
        {values},
        map_from_entries(list_filter(
            list_zip([{field_names}], [{sources}]), lambda e: e[2] IS NOT NULL
        )) AS provenance,
        CASE WHEN bool_or(r.event = 'death' OR r.date_of_death IS NOT NULL)
             THEN 'deceased' ELSE 'active' END AS status,
        now() AS created_at,
        now() AS updated_at
    FROM records r
    WHERE r.child_id IN (SELECT child_id FROM {affected_table})
    GROUP BY r.child_id
    ON CONFLICT (child_id) DO UPDATE SET
        {updates},
        provenance = excluded.provenance,
        status = excluded.status,
        updated_at = excluded.updated_at
    """
