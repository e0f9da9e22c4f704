"""`run --follow`: lines appended while it runs are linked promptly, a search from another process
is served by the running engine, and SIGTERM ends it cleanly (issues 3, 6 and 7)."""

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from tests.feeds import gro_birth, nhs_record, write_feed


def contactpoint(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True,
                          text=True, timeout=120, **kwargs)


@contextlib.contextmanager
def engine_following(*args: str) -> Iterator[subprocess.Popen]:
    """`contactpoint run --follow --json ARGS`, killed at the end if still running."""
    process = subprocess.Popen([sys.executable, "-m", "engine", "run", *args, "--follow", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()


def stopped(process: subprocess.Popen) -> tuple[str, str]:
    """What a following engine said once stopped by SIGTERM."""
    process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=60)


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def add_admin_and_practitioner(db: Path) -> None:
    """Users `ada` (admin) and `pat` (a practitioner, who searches)."""
    assert contactpoint("users", "add", "ada", "--role", "admin", "--org", "DfE",
                        "--accredited-until", "2027-12-31", "--db", str(db)).returncode == 0
    assert contactpoint("users", "add", "pat", "--role", "practitioner", "--org", "Leeds CC",
                        "--accredited-until", "2027-12-31", "--by", "ada",
                        "--db", str(db)).returncode == 0


def found(db: Path, name: str, dob: str = "2009-03-01") -> list[dict]:
    """What `pat` finds searching for `name`, born on `dob`."""
    result = contactpoint("search", "--user", "pat", "--reason", "child protection referral",
                          "--name", name, "--dob", dob, "--json", "--db", str(db))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def follower(tmp_path: Path):
    feeds, db = tmp_path / "feeds", tmp_path / "master.duckdb"
    write_feed(feeds, "gro", [gro_birth("1", "Ava", "Brown", "F", "2009-03-01", "LS6 2AB")])
    add_admin_and_practitioner(db)
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--feeds", str(feeds), "--db", str(db),
         "--follow", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    socket = Path(str(db) + ".sock")
    wait_for(socket.exists)
    yield feeds, db, process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_appended_lines_are_linked_and_search_works_while_following(follower):
    feeds, db, process = follower
    write_feed(feeds, "nhs", [nhs_record("n1", "9434765919", "Ava", "Brown", "2", "2009-03-01",
                                         "LS6 2AB", event_time="2009-03-20T09:00:00Z")],
               "2009-03.jsonl")
    children: list[dict] = []

    def linked() -> bool:
        children[:] = found(db, "Ava Brown")
        return bool(children) and children[0].get("nhs_number") == "9434765919"

    wait_for(linked)
    assert children[0]["first_name"] == "AVA"

    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert json.loads(stdout)["updates"] == 2
    assert stderr.splitlines()[0].startswith("master ready: 0 records indexed in memory in ")
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(DISTINCT child_id) FROM links").fetchall() == [(1,)]
    assert con.execute("SELECT count(*) FROM audit_log WHERE act = 'search'").fetchall()[0][0] >= 1
    con.close()


def test_the_engine_opens_the_master_and_serves_before_the_first_line(tmp_path: Path):
    """On quiet feeds the master is loaded and the service started at once, not when the first
    line arrives (that line would wait for it all, and nobody could search until then)."""
    feeds, db = tmp_path / "feeds", tmp_path / "master.duckdb"
    feeds.mkdir()
    with engine_following("--feeds", str(feeds), "--db", str(db)) as process:
        wait_for(Path(str(db) + ".sock").exists)
        stdout, stderr = stopped(process)
    assert process.returncode == 0, stderr
    assert stderr.splitlines()[0].startswith("master ready: 0 records indexed in memory in ")
    assert json.loads(stdout)["updates"] == 0


@contextlib.contextmanager
def following(tmp_path: Path, config: str) -> Iterator[tuple[Path, Path, subprocess.Popen, list]]:
    """`run --follow --config` over an empty feeds folder, once its master is ready: the feeds,
    the master, the process and what it has said on stderr so far; killed if still running."""
    feeds, db, toml = tmp_path / "feeds", tmp_path / "master.duckdb", tmp_path / "engine.toml"
    feeds.mkdir()
    toml.write_text(config)
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--feeds", str(feeds), "--db", str(db),
         "--follow", "--json", "--config", str(toml)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    said: list[str] = []
    threading.Thread(target=lambda: said.extend(process.stderr), daemon=True).start()
    try:
        wait_for(lambda: any(line.startswith("master ready") for line in said))
        yield feeds, db, process, said
    finally:
        if process.poll() is None:
            process.kill()


def test_the_master_is_checkpointed_when_the_feeds_pause(tmp_path: Path):
    """Following, the write-ahead log is checkpointed in a pause of the feeds, long before it
    reaches DuckDB's own threshold (512 MB), so its stall never falls on a waiting line."""
    config = "[store]\nidle_checkpoint_after_s = 0.5\nidle_checkpoint_min_mb = 0\n"
    with following(tmp_path, config) as (feeds, db, process, said):
        wal = Path(f"{db}.wal")
        write_feed(feeds, "gro", [gro_birth("1", "Ava", "Brown", "F", "2009-03-01", "LS6 2AB")])
        wait_for(lambda: any(line.startswith("1 updates") for line in said))
        wait_for(lambda: not wal.exists() or wal.stat().st_size == 0, timeout=15)
        process.send_signal(signal.SIGTERM)
        stdout = process.stdout.read()
        process.wait(timeout=60)
    assert process.returncode == 0, "".join(said)
    assert json.loads(stdout)["updates"] == 1


def test_a_line_is_read_when_its_file_changes_not_at_the_next_poll(tmp_path: Path):
    """Following, the kernel's word that a feed file changed wakes the source (engine.feed_watch):
    with a poll interval of ten minutes, an appended line is still resolved within seconds."""
    with following(tmp_path, "[source]\npoll_interval_ms = 600000\n") as (feeds, _, _, said):
        time.sleep(0.5)  # past the first reads at start-up: only the watch can wake it now
        write_feed(feeds, "gro", [gro_birth("1", "Ava", "Brown", "F", "2009-03-01", "LS6 2AB")])
        wait_for(lambda: any(line.startswith("1 updates") for line in said), timeout=20)


def test_what_arrives_while_a_batch_is_resolved_is_resolved_next_as_one_batch(tmp_path: Path):
    """Following, the writer takes every line read while it resolved the previous batch
    (engine.master_sink.BatchPipeline): a backlog of 400 lines read 20 at a time goes in a few
    batches, not one a read."""
    feeds, db, toml = tmp_path / "feeds", tmp_path / "master.duckdb", tmp_path / "engine.toml"
    toml.write_text("[source]\nlines_per_read = 20\n")
    add_admin_and_practitioner(db)
    births = [gro_birth(str(n), "Ava", _surname(n), "F", str(date(2009, 1, 1) + timedelta(n)),
                        f"LS{n % 30} {n % 9}AB") for n in range(400)]
    write_feed(feeds, "gro", births)
    with engine_following("--feeds", str(feeds), "--db", str(db), "--config", str(toml)
                          ) as process:
        wait_for(Path(f"{db}.sock").exists)
        last = births[-1]  # the backlog's last line
        wait_for(lambda: found(db, f"Ava {last['surname']}", last["date_of_birth"]), timeout=60)
        stdout, stderr = stopped(process)
    assert process.returncode == 0, stderr
    assert json.loads(stdout)["updates"] == 400
    con = duckdb.connect(str(db), read_only=True)
    sizes = [n for (n,) in con.execute(
        "SELECT updates FROM batches WHERE updates > 0 ORDER BY batch_id").fetchall()]
    con.close()
    assert sum(sizes) == 400
    assert len(sizes) <= 5, sizes


def _surname(n: int) -> str:
    """A surname of three letters, a different one for each `n` below 17,576."""
    return "".join(chr(ord("A") + n // 26 ** k % 26) for k in range(3)).capitalize()
