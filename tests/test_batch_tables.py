"""A batch's temporary tables: a load drops them at its commit (they hold its big batches), a
following engine keeps them until its next batch replaces them (engine.resolver)."""

from pathlib import Path

import pytest

from engine.config import EngineConfig
from engine.master_store import open_master
from engine.resolver import Resolver
from linkage_models.scoring import CompiledModel
from streams.canonical import Update
from streams.generator import generate
from streams.snapshot import read_updates


@pytest.fixture(scope="module")
def updates(tmp_path_factory: pytest.TempPathFactory) -> list[Update]:
    out = tmp_path_factory.mktemp("batch_tables")
    generate(40, 13, out)
    return [Update(**row) for row in read_updates(out / "feeds").updates.to_pylist()]


def _temporary_tables(con) -> set[str]:
    return {name for (name,) in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()}


def _children(con) -> set[frozenset[str]]:
    """Each child as the set of its records (child ids depend on the arrival order)."""
    return {frozenset(uids) for (uids,) in con.execute(
        "SELECT list(feed || ':' || record_id) FROM links GROUP BY child_id").fetchall()}


@pytest.mark.parametrize("following", [False, True], ids=["load", "following"])
def test_a_load_drops_its_tables_and_a_following_engine_replaces_them_alike(
    updates: list[Update], model: CompiledModel, tmp_path: Path, following: bool
):
    con = open_master(tmp_path / "master.duckdb")
    resolver = Resolver(con, model, EngineConfig(), following=following)
    for start in range(0, len(updates), 7):
        resolver.resolve(updates[start:start + 7])
        assert bool(_temporary_tables(con)) is following
    kept = _children(con)
    con.close()
    reference = open_master(tmp_path / "reference.duckdb")
    Resolver(reference, model, EngineConfig()).resolve(updates)
    assert kept == _children(reference)
    reference.close()
