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


def test_golden_records_are_the_same_whether_folded_every_batch_or_every_few(
    feeds: Path, tmp_path: Path
):
    from dataclasses import replace

    from engine.config import EngineConfig

    def children(refresh_every: int) -> list[tuple]:
        base = EngineConfig()
        config = replace(base, batch=replace(base.batch, max_records=300,
                                             golden_refresh_batches=refresh_every))
        db = tmp_path / f"every-{refresh_every}.duckdb"
        run(feeds, db, config=config)
        con = duckdb.connect(str(db), read_only=True)
        try:
            return con.execute("SELECT * EXCLUDE (created_at, updated_at) FROM children "
                               "ORDER BY child_id").fetchall()
        finally:
            con.close()

    every_batch = children(1)
    assert len(every_batch) > 300
    assert children(7) == every_batch
