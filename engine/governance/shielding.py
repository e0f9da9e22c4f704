"""Shielding: a shielded child shows only name, sex, date of birth and ID to practitioners.

`set_shielded` is the data manager's act. `shield_by_safety_rule` is the resolver's safety rule,
run in each batch's transaction so that feed updates never make an unshielded duplicate of a
shielded child: a child that received a record scoring at least the review threshold against a
shielded child, or that absorbed a shielded child in a merge, is shielded until a data manager
reviews it (`contactpoint shield CHILD --unshield`).
"""

from __future__ import annotations

import duckdb

from engine.governance.errors import GovernanceError

SAFETY_RULE = "safety rule"


def set_shielded(
    con: duckdb.DuckDBPyConnection, child_id: str, shielded: bool, by: str
) -> dict:
    """Shield (or unshield) `child_id`; returns {child_id, shielded, was_shielded}. A merged
    child is refused with the id of the child it was merged into."""
    rows = con.execute(
        "SELECT status, merged_into, shielded FROM children WHERE child_id = ?", [child_id]
    ).fetchall()
    if not rows:
        raise GovernanceError(f"no child {child_id!r} in the master")
    status, merged_into, was_shielded = rows[0]
    if status == "merged":
        raise GovernanceError(f"child {child_id!r} was merged into {merged_into}: act on that one")
    con.execute(
        """
        UPDATE children SET shielded = ?, shielded_by = ?, shielded_at = now(),
                            updated_at = now()
        WHERE child_id = ?
        """,
        [shielded, by if shielded else None, child_id],
    )
    return {"child_id": child_id, "shielded": shielded, "was_shielded": was_shielded}


def shield_by_safety_rule(
    con: duckdb.DuckDBPyConnection, scored_edges: str, decided: str, review_threshold: float
) -> list[str]:
    """Shield every child that, in this batch, received a record scoring at least
    `review_threshold` against a shielded child, or absorbed a shielded child in a merge.
    Returns the children newly shielded.

    `scored_edges(unique_id_l, child_id, match_probability)`: the batch's scored pairs (new
    record vs a record of child `child_id`); `decided(unique_id, child_id)`: where each new record
    went. Run after the batch's children rows are written, in the batch's transaction.
    """
    rows = con.execute(
        f"""
        UPDATE children SET shielded = true, shielded_by = '{SAFETY_RULE}', shielded_at = now()
        WHERE NOT shielded AND child_id IN (
            SELECT d.child_id FROM {decided} d
            JOIN {scored_edges} e ON e.unique_id_l = d.unique_id
            JOIN children s ON s.child_id = e.child_id
            WHERE s.shielded AND e.match_probability >= ?
            UNION
            SELECT merged_into FROM children
            WHERE status = 'merged' AND shielded AND merged_into IS NOT NULL
        )
        RETURNING child_id
        """,
        [review_threshold],
    ).fetchall()
    return sorted(row[0] for row in rows)
