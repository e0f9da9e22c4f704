"""Shielding: a shielded child shows only name, sex, date of birth and ID to practitioners.

`set_shielded` is the data manager's act. The safety rule is the engine's
(engine.resolution.changes.shield_by_safety_rule), run in each change's transaction: reading the
`shielded` flag as data, it shields every child that a change put next to a shielded one, until a
data manager reviews it (`contactpoint shield CHILD --unshield`; it sticks).
"""

from __future__ import annotations

import duckdb

from engine.governance.errors import GovernanceError


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
