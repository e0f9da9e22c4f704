"""Crash anywhere, restart, and the master is exactly as if nothing had happened (issue 6)."""

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from streams.generator import generate

CONFIG = """
[batch]
max_records = 400

[recovery]
snapshot_interval_s = 0.3
"""


def run_command(feeds: Path, db: Path, config: Path) -> list[str]:
    return [sys.executable, "-m", "engine", "run", "--feeds", str(feeds), "--db", str(db),
            "--config", str(config), "--json"]


def master_state(db: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            "links": con.execute(
                "SELECT feed, record_id, child_id, decision, match_probability FROM links "
                "ORDER BY ALL").fetchall(),
            "children": con.execute(
                "SELECT * EXCLUDE (created_at, updated_at) FROM children ORDER BY child_id"
            ).fetchall(),
            "dead_letters": con.execute(
                "SELECT feed, file, line, error FROM dead_letters ORDER BY ALL").fetchall(),
        }
    finally:
        con.close()


@pytest.fixture(scope="module")
def feeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("crash")
    generate(4000, 11, out)
    return out / "feeds"


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_master(
    feeds: Path, tmp_path: Path
):
    config = tmp_path / "engine.toml"
    config.write_text(CONFIG)
    reference = tmp_path / "reference.duckdb"
    subprocess.run(run_command(feeds, reference, config), check=True, capture_output=True)

    crashed = tmp_path / "crashed.duckdb"
    rng = random.Random(6)
    kills = 0
    for _ in range(4):
        process = subprocess.Popen(run_command(feeds, crashed, config),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.5, 4.0))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    subprocess.run(run_command(feeds, crashed, config), check=True, capture_output=True)

    assert kills >= 2, "the run finished before it could be killed: make the data larger"
    assert master_state(crashed) == master_state(reference)


def test_sigterm_stops_cleanly_after_the_current_batch_and_says_how_to_resume(
    feeds: Path, tmp_path: Path
):
    config = tmp_path / "engine.toml"
    config.write_text(CONFIG)
    db = tmp_path / "master.duckdb"
    process = subprocess.Popen(run_command(feeds, db, config), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(3.0)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "Run the same command to resume" in stderr
    assert '"updates"' in stdout
    resumed = subprocess.run(run_command(feeds, db, config), check=True, capture_output=True,
                             text=True)
    assert '"updates"' in resumed.stdout
