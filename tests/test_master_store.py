"""Checkpoints of the master: small ones after every batch's WAL, vacuum only when asked."""

from __future__ import annotations

from pathlib import Path

from engine.config import StoreConfig
from engine.master_store import checkpoint_and_vacuum, configure_checkpoints, open_master


def test_without_vacuum_checkpoints_keep_deleted_rows_until_checkpoint_and_vacuum(tmp_path: Path):
    con = open_master(tmp_path / "master.duckdb")
    con.execute("CREATE TABLE churn AS SELECT range AS i, md5(range::VARCHAR) AS s "
                "FROM range(300000)")
    con.execute("CHECKPOINT")
    configure_checkpoints(con, StoreConfig(checkpoint_threshold_mb=3), vacuum=False)

    con.execute("DELETE FROM churn WHERE i % 10 != 0")
    con.execute("CHECKPOINT")
    assert _row_groups(con) == 3
    # Vacuum rewrites the row groups touched since the last checkpoint.
    con.execute("DELETE FROM churn WHERE i IN (0, 130000, 250000)")
    checkpoint_and_vacuum(con)
    assert _row_groups(con) == 1
    assert con.execute(
        "SELECT current_setting('max_vacuum_tasks'), current_setting('checkpoint_threshold')"
    ).fetchall() == [(0, "2.8 MiB")]


def _row_groups(con) -> int:
    return con.execute(
        "SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('churn')"
    ).fetchall()[0][0]
