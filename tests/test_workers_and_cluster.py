"""Two Bytewax workers, and a two-process cluster on loopback, give the same links as one worker."""

import socket
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from streams.generator import generate
from tests.feeds import run

LINKS = "SELECT feed, record_id, child_id, decision, match_probability FROM links ORDER BY ALL"


@pytest.fixture(scope="module")
def feeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("workers")
    generate(400, 21, out)
    return out / "feeds"


def links(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(LINKS).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def one_worker_links(feeds: Path, tmp_path_factory: pytest.TempPathFactory) -> list[tuple]:
    db = tmp_path_factory.mktemp("one") / "master.duckdb"
    run(feeds, db)
    return links(db)


def test_two_workers_give_the_same_links_as_one(feeds: Path, tmp_path: Path, one_worker_links):
    db = tmp_path / "master.duckdb"
    run(feeds, db, workers=2)
    assert links(db) == one_worker_links


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_a_two_process_cluster_on_loopback_gives_the_same_links(feeds: Path, tmp_path: Path,
                                                                one_worker_links):
    db = tmp_path / "master.duckdb"
    addresses = ",".join(f"127.0.0.1:{port}" for port in free_ports(2))
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "engine", "run", "--feeds", str(feeds), "--db", str(db),
             "--process-id", str(i), "--addresses", addresses, "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    results = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [err for _, err in results]
    assert links(db) == one_worker_links


def test_golden_records_are_the_same_whatever_the_batch_size(feeds: Path, tmp_path: Path):
    """Children are named after their founding record, which depends on the batching, so
    they are compared by the records they hold."""
    from dataclasses import replace

    from engine.config import EngineConfig

    def golden_by_records(max_records: int) -> dict[frozenset[str], tuple]:
        base = EngineConfig()
        config = replace(base, batch=replace(base.batch, max_records=max_records))
        db = tmp_path / f"batches-of-{max_records}.duckdb"
        run(feeds, db, config=config)
        con = duckdb.connect(str(db), read_only=True)
        try:
            assert con.execute(
                "SELECT count(*) = count(DISTINCT child_id) FROM children").fetchall() == [(True,)]
            rows = con.execute("""
                SELECT r.records, c.* EXCLUDE (child_id, created_at, updated_at, row_no)
                FROM children c JOIN (
                    SELECT child_id, list(feed || ':' || record_id) AS records
                    FROM links GROUP BY child_id
                ) r USING (child_id)
            """).fetchall()
        finally:
            con.close()
        return {frozenset(row[0]): row[1:] for row in rows}

    in_one_batch = golden_by_records(EngineConfig().batch.max_records)
    in_small_batches = golden_by_records(300)
    same_records = in_one_batch.keys() & in_small_batches.keys()
    assert len(same_records) > 0.9 * len(in_one_batch) > 300
    assert {k: in_small_batches[k] for k in same_records} == {
        k: in_one_batch[k] for k in same_records}
