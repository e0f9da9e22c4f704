"""A following engine reads the columns its batches read from scattered rows once at start, so
that DuckDB's cache holds them before the first line (engine.resolver `warm_cache`)."""

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
def loaded_master(tmp_path_factory: pytest.TempPathFactory, model: CompiledModel) -> Path:
    out = tmp_path_factory.mktemp("warm")
    generate(3000, 5, out)  # enough rows for a column to fill blocks of its own
    updates = [Update(**row) for row in read_updates(out / "feeds").updates.to_pylist()]
    con = open_master(out / "master.duckdb")
    Resolver(con, model, EngineConfig()).resolve(updates)
    con.execute("CHECKPOINT")
    con.close()
    return out / "master.duckdb"


def _cached_bytes(con) -> int:
    return con.execute("SELECT memory_usage_bytes FROM duckdb_memory() "
                       "WHERE tag = 'BASE_TABLE'").fetchall()[0][0]


def test_a_following_engine_starts_with_the_masters_scattered_columns_cached(
    loaded_master: Path, model: CompiledModel
):
    con = open_master(loaded_master)
    resolver = Resolver(con, model, EngineConfig(), following=True)
    loaded = _cached_bytes(con)
    resolver.warm_cache()
    assert _cached_bytes(con) > loaded
    con.close()
