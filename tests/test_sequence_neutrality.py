"""Sequence neutrality as a property: any arrival order and any batching of the same records give
the same children, apart from the records a person must look at (DESIGN.md principle 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import EngineConfig
from engine.master_store import configure_store, open_master
from engine.resolver import Resolver
from linkage_models.scoring import CompiledModel
from streams.canonical import Update
from streams.generator import generate
from streams.snapshot import read_updates


@pytest.fixture(scope="module")
def small_feed(tmp_path_factory: pytest.TempPathFactory) -> list[Update]:
    """A generated population of 25 children, twins and errors included: its good records."""
    out = tmp_path_factory.mktemp("generated")
    generate(25, 11, out)
    return [Update(**row) for row in read_updates(out / "feeds").updates.to_pylist()]


def children_apart_from_review(updates: list[Update], sizes: list[int], model: CompiledModel,
                               db: Path, following: bool = False) -> set[frozenset[str]]:
    """Resolve `updates` in batches of the given sizes (the last takes the rest) into a new
    master, by a resolver that holds what following holds in memory (and plans as following
    does) or not; its children, without the records queued for review."""
    con = open_master(db)
    configure_store(con, EngineConfig().store, following=following)
    resolver = Resolver(con, model, EngineConfig(), following=following)
    start = 0
    for size in [*sizes, len(updates)]:
        if start >= len(updates):
            break
        resolver.resolve(updates[start:start + size])
        start += size
    rows = con.execute("""
        SELECT list(feed || ':' || record_id) FROM links WHERE decision <> 'review'
        GROUP BY child_id
    """).fetchall()
    con.close()
    return {frozenset(row[0]) for row in rows}


@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
@pytest.mark.parametrize("following", [False, True], ids=["bulk", "following"])
def test_any_order_and_batching_gives_the_same_children(
    data: st.DataObject, small_feed: list[Update], model: CompiledModel, tmp_path: Path,
    following: bool,
):
    expected = children_apart_from_review(small_feed, [], model, tmp_path / "one-batch.duckdb")
    shuffled = data.draw(st.permutations(small_feed), label="arrival order")
    sizes = data.draw(st.lists(st.integers(5, 60), max_size=5), label="batch sizes")
    name = f"m{abs(hash((tuple(u.unique_id for u in shuffled), tuple(sizes), following)))}.duckdb"
    assert children_apart_from_review(shuffled, sizes, model, tmp_path / name,
                                      following) == expected


def test_the_first_records_in_every_order_give_the_same_children(
    small_feed: list[Update], model: CompiledModel, tmp_path: Path
):
    """One record at a time, newest first and oldest first, against one batch."""
    by_time = sorted(small_feed, key=lambda u: (u.event_time, u.unique_id))[:30]
    results = [
        children_apart_from_review(order, [1] * len(order), model, tmp_path / f"{i}.duckdb")
        for i, order in enumerate([by_time, by_time[::-1]])
    ]
    one_batch = children_apart_from_review(by_time, [], model, tmp_path / "all.duckdb")
    assert results[0] == results[1] == one_batch
