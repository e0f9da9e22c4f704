"""`contactpoint backup` and `restore` (issue 15): a backup, taken even while `run --follow` holds
the master, restores to a master that resumes at the backup's own feed positions, so backup ->
more feeds -> restore -> run gives the master of never restoring; anything but a whole backup of
this schema is refused with one line."""

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from engine.cli import main
from engine.governance import search_index
from engine.master_store import SCHEMA_VERSION
from linkage_models.scoring import CompiledModel
from tests.feeds import (
    count_lines,
    gro_birth,
    master_state,
    nhs_record,
    run,
    synthetic_feeds,
    write_feed,
)
from tests.test_governance_helpers import OLIVER, act, add_staff, governed_master, ingest, update

ADMIN = ["users", "add", "ada", "--role", "admin", "--org", "DfE",
         "--accredited-until", "2027-12-31"]


def contactpoint(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def lines_read(db: Path) -> int:
    """Feed lines the master's batches read, over all its runs."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT sum(items) FROM batches").fetchall()[0][0]
    finally:
        con.close()


def copy_lines(source: Path, target: Path, keep) -> None:
    """Copy every feed file of `source` to `target`, keeping the lines `keep(file, number)`
    (appending to what `target` holds, as a feed grows)."""
    for path in sorted(source.glob("*/*.jsonl")):
        out = target / path.parent.name / path.name
        out.parent.mkdir(parents=True, exist_ok=True)
        lines = path.read_bytes().splitlines(keepends=True)
        with out.open("ab") as handle:
            handle.writelines(line for n, line in enumerate(lines, 1) if keep(path.name, n))


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_feeds(tmp_path_factory.mktemp("backup"), 300, 8)


def test_backup_then_more_feeds_then_restore_and_run_gives_the_master_of_never_restoring(
    generated: Path, tmp_path: Path, capsys
):
    files = sorted({path.name for path in generated.glob("*/*.jsonl")})
    middle = files[len(files) // 2]  # files before it now, its first half now, the rest later

    def now(name: str, number: int) -> bool:
        return name < middle or (name == middle and number % 2 == 1)

    feeds, db, backup = tmp_path / "feeds", tmp_path / "master.duckdb", tmp_path / "backup"
    copy_lines(generated, feeds, now)
    assert contactpoint([*ADMIN, "--db", str(db)], capsys)[0] == 0
    run(feeds, db)
    status, out, _ = contactpoint(["backup", "--db", str(db), "--out", str(backup),
                                   "--by", "ada", "--json"], capsys)
    assert status == 0
    manifest = json.loads(out)
    copy_lines(generated, feeds, lambda name, number: not now(name, number))
    run(feeds, db)  # the master that is never restored

    restored = tmp_path / "restored.duckdb"
    assert contactpoint(["restore", "--from", str(backup), "--db", str(restored)], capsys)[0] == 0
    assert master_state(restored)["links"] and len(master_state(restored)["links"]) == (
        manifest["counts"]["links"])
    after = run(feeds, restored)

    assert after.updates > 0
    assert master_state(restored) == master_state(db)
    assert lines_read(restored) == lines_read(db) == count_lines(feeds)  # none again, none skipped


def test_restore_moves_the_master_it_replaces_aside(generated: Path, tmp_path: Path, capsys):
    db, backup = tmp_path / "master.duckdb", tmp_path / "backup"
    assert contactpoint([*ADMIN, "--db", str(db)], capsys)[0] == 0
    assert contactpoint(["backup", "--db", str(db), "--out", str(backup), "--by", "ada"],
                        capsys)[0] == 0
    run(generated, db)
    before = master_state(db)

    status, out, _ = contactpoint(["restore", "--from", str(backup), "--db", str(db), "--json"],
                                  capsys)

    assert status == 0
    (aside,) = tmp_path.glob("master.duckdb.before-restore-*")
    assert json.loads(out)["replaced"] == str(aside)
    assert master_state(aside) == before
    assert master_state(db)["links"] == []


def damage(backup: Path, how: str) -> None:
    manifest_path = backup / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    if how == "no manifest":
        manifest_path.unlink()
    elif how == "foreign":
        manifest_path.write_text(json.dumps({**manifest, "format": "someone-else/1"}))
    elif how == "other schema":
        manifest_path.write_text(json.dumps({**manifest, "schema_version": "1"}))
    elif how == "cut short":
        with (backup / "master.duckdb").open("r+b") as handle:
            handle.truncate(manifest["bytes"] // 2)
    elif how == "damaged":
        with (backup / "master.duckdb").open("r+b") as handle:
            handle.seek(manifest["bytes"] // 2)
            handle.write(b"\xff" * 16)


@pytest.mark.parametrize("how, reason", [
    ("no manifest", "is not a ContactPoint backup, or a partial one (no manifest.json)"),
    ("foreign", "is not a ContactPoint backup"),
    ("other schema",
     f"holds a master of schema version 1, this engine writes version {SCHEMA_VERSION}"),
    ("cut short", "is a partial backup: master.duckdb is missing or cut short"),
    ("damaged", "is damaged: master.duckdb does not match its manifest"),
])
def test_restore_refuses_anything_but_a_whole_backup_of_this_schema_and_leaves_the_master(
    how: str, reason: str, tmp_path: Path, capsys
):
    db, backup, target = tmp_path / "m.duckdb", tmp_path / "backup", tmp_path / "target.duckdb"
    assert contactpoint([*ADMIN, "--db", str(db)], capsys)[0] == 0
    assert contactpoint(["backup", "--db", str(db), "--out", str(backup), "--by", "ada"],
                        capsys)[0] == 0
    shutil.copyfile(db, target)
    damage(backup, how)

    status, _, err = contactpoint(["restore", "--from", str(backup), "--db", str(target)], capsys)

    assert status == 2
    assert len(err.strip().splitlines()) == 1 and reason in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup", "m.duckdb", "target.duckdb"]


def test_a_backup_needs_an_accredited_admin_and_is_audited(tmp_path: Path, capsys):
    db = tmp_path / "m.duckdb"
    assert contactpoint([*ADMIN, "--db", str(db)], capsys)[0] == 0
    assert contactpoint(["users", "add", "pat", "--role", "practitioner", "--org", "Leeds CC",
                         "--accredited-until", "2027-12-31", "--by", "ada", "--db", str(db)],
                        capsys)[0] == 0

    refused = contactpoint(["backup", "--db", str(db), "--out", str(tmp_path / "b1"),
                            "--by", "pat"], capsys)
    taken = contactpoint(["backup", "--db", str(db), "--out", str(tmp_path / "b2"),
                          "--by", "ada", "--reason", "nightly"], capsys)

    assert refused[0] == 2 and not (tmp_path / "b1" / "manifest.json").exists()
    assert taken[0] == 0
    con = duckdb.connect(str(db), read_only=True)
    entries = con.execute("""SELECT "user", act, reason FROM audit_log WHERE act = 'backup'
                             ORDER BY seq""").fetchall()
    con.close()
    assert entries == [("pat", "backup", None), ("ada", "backup", "nightly")]


def test_a_backup_taken_while_run_follow_holds_the_master_restores_and_resumes(
    tmp_path: Path, capsys
):
    feeds, db = tmp_path / "feeds", tmp_path / "master.duckdb"
    write_feed(feeds, "gro", [gro_birth("1", "Ava", "Brown", "F", "2009-03-01", "LS6 2AB")])
    assert contactpoint([*ADMIN, "--db", str(db)], capsys)[0] == 0
    follower = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--feeds", str(feeds), "--db", str(db),
         "--follow", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_service(Path(f"{db}.sock"), follower)
        backup = wait_for_backup_holding(db, tmp_path, links=1, capsys=capsys)
        with pytest.raises(duckdb.IOException, match="lock"):  # the engine still holds it alone
            duckdb.connect(str(db), read_only=True)
        write_feed(feeds, "nhs", [nhs_record("n1", "9434765919", "Ava", "Brown", "2",
                                             "2009-03-01", "LS6 2AB")], "2009-03.jsonl")
        wait_for_backup_holding(db, tmp_path, links=2, capsys=capsys)
        follower.send_signal(signal.SIGTERM)
        _, stderr = follower.communicate(timeout=60)
        assert follower.returncode == 0, stderr
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    restored = tmp_path / "restored.duckdb"
    assert contactpoint(["restore", "--from", str(backup), "--db", str(restored)], capsys)[0] == 0
    assert len(master_state(restored)["links"]) == 1

    after = run(feeds, restored)

    assert after.updates == 1
    assert master_state(restored) == master_state(db)


def test_a_backup_waits_for_the_search_index_upkeep_under_way_and_then_succeeds(
    tmp_path: Path, model: CompiledModel
):
    """The upkeep writes in a transaction of its own, which the engine's write lock does not
    cover, and a checkpoint fails beside it, or in a transaction begun before it committed: the
    backup waits for the upkeep before its own transaction begins (the CHECKPOINT effect)."""
    con = governed_master(tmp_path / "m.duckdb")
    add_staff(con, model)
    ingest(con, model, [update("gro", "oliver", source_key="R1", **OLIVER)])
    upkeep, backed_up = con.cursor(), []
    with search_index.upkeep_paused():  # an upkeep under way, as the engine starts
        upkeep.begin()
        upkeep.execute("CREATE TABLE upkeep_wrote AS SELECT 1 AS x")
        backup = threading.Thread(target=lambda: backed_up.append(
            act(con.cursor(), model, "backup", "root", out=str(tmp_path / "backup"))))
        backup.start()
        time.sleep(0.3)  # the backup is waiting (before the fix: its transaction had begun)
        upkeep.commit()
    backup.join(30)
    assert backed_up and backed_up[0].result["counts"]["links"] == 1


def wait_for_service(socket: Path, engine: subprocess.Popen, timeout: float = 60.0) -> None:
    """The engine serves requests (backup among them) once it holds the master."""
    deadline = time.monotonic() + timeout
    while not socket.exists():
        assert engine.poll() is None, engine.stderr.read()
        assert time.monotonic() < deadline, "the engine never started serving"
        time.sleep(0.1)


def wait_for_backup_holding(db: Path, tmp_path: Path, links: int, capsys,
                            timeout: float = 60.0) -> Path:
    """Back up the followed master until a backup holds `links` links; that backup's folder."""
    deadline = time.monotonic() + timeout
    for attempt in range(10_000):
        folder = tmp_path / f"backup-{links}-{attempt}"
        status, out, err = contactpoint(["backup", "--db", str(db), "--out", str(folder),
                                         "--by", "ada", "--json"], capsys)
        assert status == 0, err
        if json.loads(out)["counts"]["links"] == links:
            return folder
        assert time.monotonic() < deadline, "the followed master never held the links"
        time.sleep(0.3)
    raise AssertionError("unreachable")
