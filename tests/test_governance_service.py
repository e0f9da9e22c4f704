"""The governance service: while the engine holds the master (no other process can open it),
governance verbs reach it over the master's Unix socket and are performed on the engine's own
connection; without a service they open the master file themselves."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from engine.governance.acts import Request
from engine.governance.audit import verify_chain
from engine.governance.client import MasterFile, dispatch
from engine.governance.errors import GovernanceError
from engine.governance.service import ServiceHandle, socket_path_for, start_service
from linkage_models.scoring import CompiledModel
from tests.test_governance_helpers import (
    OLIVER,
    add_staff,
    child_of,
    governed_master,
    ingest,
    run_cli,
    update,
)

SEARCH = ["search", "--user", "pat", "--reason", "enquiry", "--name", "Oliver Quartermaine",
          "--dob", "2009-03-01", "--json"]
# the governance verbs as `contactpoint` runs them, in a process of their own
CLI_PROCESS = """
import argparse, sys
from engine.errors import UsageError
from engine.governance.cli import register_governance_verbs
parser = argparse.ArgumentParser(prog="contactpoint")
register_governance_verbs(parser.add_subparsers(dest="verb", required=True))
args = parser.parse_args(sys.argv[1:])
try:
    sys.exit(args.handler(args))
except UsageError as err:
    print(f"contactpoint {args.verb}: {err}", file=sys.stderr)
    sys.exit(2)
"""



@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "m.duckdb"


@pytest.fixture
def engine_con(db: Path, model: CompiledModel) -> Iterator[duckdb.DuckDBPyConnection]:
    """The engine's connection: it holds the master read-write for the whole test."""
    con = governed_master(db)
    ingest(con, model, [update("gro", "oliver", source_key="R1", **OLIVER)])
    add_staff(con, model)
    yield con
    con.close()


@pytest.fixture
def service(engine_con: duckdb.DuckDBPyConnection, db: Path,
            model: CompiledModel) -> Iterator[ServiceHandle]:
    handle = start_service(engine_con, db, model)
    yield handle
    handle.stop()


def cli_process(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI_PROCESS, *argv], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).parents[1])


def raw_request(path: Path, payload: bytes) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.connect(str(path))
        connection.sendall(payload)
        return json.loads(connection.makefile("rb").readline())


def test_the_socket_sits_beside_the_master_even_when_its_path_is_too_long_for_an_address(
    tmp_path: Path, model: CompiledModel, capsys: pytest.CaptureFixture
):
    assert socket_path_for(tmp_path / "m.duckdb") == tmp_path / "m.duckdb.sock"
    deep = tmp_path / ("d" * 120) / "m.duckdb"
    deep.parent.mkdir()
    con = governed_master(deep)
    add_staff(con, model)
    handle = start_service(con, deep, model)
    try:
        assert handle.socket_path == deep.with_name("m.duckdb.sock")
        assert handle.socket_path.is_socket()
        status, out, _ = run_cli(["users", "list", "--db", str(deep), "--json"], capsys)
        assert status == 0 and len(json.loads(out)) == 3  # through the socket: the file is held
    finally:
        handle.stop()
        con.close()


def test_the_service_never_starts_in_a_folder_other_users_can_write(
    tmp_path: Path, model: CompiledModel
):
    shared = tmp_path / "shared"
    shared.mkdir()
    con = governed_master(shared / "m.duckdb")
    try:
        shared.chmod(0o777)
        with pytest.raises(GovernanceError, match="can be written by other users"):
            start_service(con, shared / "m.duckdb", model)
        assert not socket_path_for(shared / "m.duckdb").exists()
    finally:
        con.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a listener as another user")
def test_the_client_refuses_a_socket_served_by_another_user(db: Path):
    """Someone else's listener at the master's socket path never receives a request."""
    listener = subprocess.Popen([sys.executable, "-c", ANOTHER_USERS_LISTENER,
                                 str(socket_path_for(db))], stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "listening"
        status, _, err = _cli_in_process(["users", "list", "--db", str(db)])
        assert status == 2 and "is served by another user (uid 65534)" in err
    finally:
        listener.kill()
        listener.wait()


# a listener of user nobody (65534): the peer credentials are the listener's when it listens
ANOTHER_USERS_LISTENER = """
import os, socket, sys
server = socket.socket(socket.AF_UNIX); server.bind(sys.argv[1])
os.setgid(65534); os.setuid(65534)
server.listen()
print("listening", flush=True)
while True:
    connection, _ = server.accept()
    received = connection.recv(65536)
    sys.stderr.write(f"received {len(received)} bytes\\n")
"""


def _cli_in_process(argv: list[str]) -> tuple[int, str, str]:
    done = cli_process(*argv)
    return done.returncode, done.stdout, done.stderr


def test_another_process_searches_through_the_running_engines_service(
    service: ServiceHandle, db: Path, engine_con: duckdb.DuckDBPyConnection
):
    done = cli_process(*SEARCH, "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert [hit["child_id"] for hit in json.loads(done.stdout)] == [
        child_of(engine_con, "gro", "oliver")]
    assert engine_con.execute("SELECT act, \"user\" FROM audit_log ORDER BY seq DESC LIMIT 1"
                              ).fetchall() == [("search", "pat")]


def test_without_the_service_another_process_cannot_open_a_held_master(
    engine_con: duckdb.DuckDBPyConnection, db: Path
):
    done = cli_process(*SEARCH, "--db", str(db))
    assert done.returncode == 2
    assert done.stderr.startswith("contactpoint search: ")
    assert "in use by another process" in done.stderr or "lock" in done.stderr.lower()


def test_the_service_performs_with_the_engines_model_and_connection(
    service: ServiceHandle, db: Path, capsys: pytest.CaptureFixture
):
    status, out, err = run_cli([*SEARCH, "--db", str(db), "--model", "/no/such/model.json"],
                               capsys)
    assert (status, err) == (0, "")
    assert len(json.loads(out)) == 1


def test_without_a_service_the_verb_opens_the_master_itself(
    db: Path, model: CompiledModel, capsys: pytest.CaptureFixture
):
    con = governed_master(db)
    ingest(con, model, [update("gro", "oliver", source_key="R1", **OLIVER)])
    add_staff(con, model)
    con.close()
    status, out, _ = run_cli([*SEARCH, "--db", str(db)], capsys)
    assert (status, len(json.loads(out))) == (0, 1)
    status, _, err = run_cli([*SEARCH, "--db", str(db), "--model", "/no/such/model.json"],
                             capsys)
    assert (status, err) == (2, "contactpoint search: model file not found: "
                                "/no/such/model.json\n")


def test_a_refusal_through_the_service_is_one_line_and_audited(
    service: ServiceHandle, db: Path, engine_con: duckdb.DuckDBPyConnection,
    capsys: pytest.CaptureFixture
):
    engine_con.execute("UPDATE users SET revoked_at = now() WHERE name = 'pat'")
    status, _, err = run_cli([*SEARCH, "--db", str(db)], capsys)
    assert status == 2
    assert err.startswith("contactpoint search: user 'pat' was revoked on ")
    assert err.count("\n") == 1
    query = engine_con.execute("SELECT query FROM audit_log ORDER BY seq DESC LIMIT 1"
                               ).fetchall()[0][0]
    assert "revoked" in json.loads(query)["refused"]


def test_malformed_and_oversized_requests_get_an_error_and_the_service_goes_on(
    service: ServiceHandle, db: Path, capsys: pytest.CaptureFixture
):
    path = service.socket_path
    assert raw_request(path, b"DROP TABLE children\n") == {"ok": False,
                                                           "error": "malformed request"}
    assert raw_request(path, b'{"act": "search"}\n') == {"ok": False,
                                                         "error": "malformed request"}
    assert raw_request(path, b'{"act": "nope", "actor": null, "reason": null, "args": {}}\n'
                       ) == {"ok": False, "error": "unknown act"}
    assert raw_request(path, b"x" * 200_000 + b"\n") == {"ok": False,
                                                         "error": "request too long"}
    hostile = {"act": "search", "actor": "pat", "reason": "r", "args": {"name": "A" * 10_000}}
    assert raw_request(path, json.dumps(hostile).encode() + b"\n")["error"] == (
        "name is 10,000 characters long (limit 200)")
    assert run_cli([*SEARCH, "--db", str(db)], capsys)[0] == 0


def test_concurrent_requests_are_all_served_and_audited_in_one_chain(
    service: ServiceHandle, db: Path, engine_con: duckdb.DuckDBPyConnection
):
    from engine.governance.acts import Request
    from engine.governance.client import send_request

    request = Request("search", "pat", "enquiry", {"dob": "2009-03-01"})
    outcomes: list = []
    threads = [threading.Thread(
        target=lambda: outcomes.append(send_request(service.socket_path, request)))
        for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 12 and all(len(o.result) == 1 for o in outcomes)
    report = verify_chain(engine_con)
    assert (report.intact, report.entries) == (True, 3 + 12)


def test_acts_wait_for_the_engines_write_lock(
    service: ServiceHandle, db: Path, engine_con: duckdb.DuckDBPyConnection
):
    from engine.governance.acts import Request
    from engine.governance.client import send_request

    child = child_of(engine_con, "gro", "oliver")
    request = Request("shield", "dana", "risk", {"child_id": child, "unshield": False})
    with service.write_lock:  # the engine is writing a batch
        thread = threading.Thread(target=send_request, args=(service.socket_path, request))
        thread.start()
        time.sleep(0.3)
        assert thread.is_alive()
    thread.join(timeout=10)
    assert engine_con.execute("SELECT shielded FROM children WHERE child_id = ?",
                              [child]).fetchall() == [(True,)]


def test_a_search_does_not_wait_for_a_batch_being_written_and_is_still_audited(
    service: ServiceHandle, db: Path, engine_con: duckdb.DuckDBPyConnection
):
    from engine.governance.acts import Request
    from engine.governance.client import send_request

    request = Request("search", "pat", "enquiry", {"dob": "2009-03-01"})
    with service.write_lock:  # the engine is writing a batch
        outcome = send_request(service.socket_path, request)
    assert [hit["child_id"] for hit in outcome.result] == [child_of(engine_con, "gro", "oliver")]
    assert engine_con.execute('SELECT act, "user" FROM audit_log ORDER BY seq DESC LIMIT 1'
                              ).fetchall() == [("search", "pat")]


def test_stop_removes_the_socket_and_a_stale_one_is_replaced(
    engine_con: duckdb.DuckDBPyConnection, db: Path, model: CompiledModel
):
    stale = socket_path_for(db)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(stale))  # bound, never listening: what a crashed engine leaves
    handle = start_service(engine_con, db, model)
    assert stale.exists() and (stale.stat().st_mode & 0o777) == 0o600
    handle.stop()
    assert not stale.exists()


def test_a_master_file_serves_several_acts_with_one_opening_and_close_frees_it(
    db: Path, model: CompiledModel
):
    con = governed_master(db)
    ingest(con, model, [update("gro", "oliver", source_key="R1", **OLIVER)])
    add_staff(con, model)
    con.close()
    search = Request("search", "pat", "enquiry", {"name": "Oliver Quartermaine",
                                                  "dob": "2009-03-01"})
    with MasterFile(db) as master:
        assert dispatch(db, Request("session.check", "pat", None, {}),
                        master_file=master).result["role"] == "practitioner"
        held = cli_process(*SEARCH, "--db", str(db))  # the file is still open: held
        assert len(dispatch(db, search, master_file=master).result) == 1
    assert held.returncode == 2 and "in use by another process" in held.stderr
    assert cli_process(*SEARCH, "--db", str(db)).returncode == 0
