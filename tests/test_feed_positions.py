"""The master alone says where to resume reading the feeds (issue 15): its positions commit with
each batch, and nothing beside the master (a Bytewax recovery store) can make a run skip a line."""

from pathlib import Path

import duckdb
import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import run_main

from engine.config import EngineConfig
from engine.dataflow import RunOptions, build_flow
from engine.feed_source import StopSignal
from linkage_models.scoring import DEFAULT_MODEL_PATH
from tests.feeds import count_lines, master_state, run, synthetic_feeds


@pytest.fixture(scope="module")
def feeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_feeds(tmp_path_factory.mktemp("positions"), 250, 4)


def test_after_a_run_the_master_holds_the_end_of_every_feed_file(feeds: Path, tmp_path: Path):
    db = tmp_path / "master.duckdb"
    run(feeds, db)
    expected = sorted(
        (f"{path.parent.name}/{path.name}", path.stat().st_size,
         len(path.read_bytes().splitlines()))
        for path in feeds.glob("*/*.jsonl")
    )
    assert master_state(db)["feed_positions"] == expected


def test_a_master_re_created_beside_a_later_recovery_store_reads_every_line(
    feeds: Path, tmp_path: Path
):
    """The issue's report: a new master beside the old `master.duckdb.recovery` read 0 updates."""
    db = tmp_path / "master.duckdb"
    store = tmp_path / "master.duckdb.recovery"
    store.mkdir()
    init_db_dir(store, 1)
    options = RunOptions(feeds_dir=feeds, db_path=db, model_path=DEFAULT_MODEL_PATH,
                         config=EngineConfig())
    run_main(build_flow(options, StopSignal()).dataflow, recovery_config=RecoveryConfig(store))
    db.unlink()  # re-created: the store beside it has read every file to its end

    summary = run(feeds, db)

    reference = tmp_path / "reference.duckdb"
    run(feeds, reference)
    assert summary.updates + summary.dead_letters == count_lines(feeds)
    assert master_state(db) == master_state(reference)


def test_a_master_without_positions_reads_its_feeds_again_and_changes_nothing(
    feeds: Path, tmp_path: Path
):
    """A master written before positions were kept has none: it re-reads, never skips."""
    db = tmp_path / "master.duckdb"
    run(feeds, db)
    before = master_state(db)
    con = duckdb.connect(str(db))
    con.execute("DROP TABLE feed_positions")
    con.close()

    again = run(feeds, db)

    assert (again.updates, again.dead_letters) == (0, 0)
    assert master_state(db) == before
