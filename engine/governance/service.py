"""The governance service: the running engine serves search and admin acts on its own master
connection, over a Unix domain socket beside the master file (local only, owner-only mode).

DuckDB lets one process open a master file read-write, and while it does no other process can
open it at all; so while `run --follow` holds the master, every governance act must be performed
by that process. Each request is one JSON line (`acts.Request`), each reply one JSON line:
`{"ok": true, "result": …, "child_ids": […], "exit_status": 0}` or `{"ok": false, "error": "…"}`.
Requests are served by a small pool of cursors of the engine's connection; acts that write
what batches write take the write lock the engine's writer shares, so that they never write at
the same time, and reading acts (a search) never wait for a batch (`acts.perform`).

The socket always sits beside the master (a path too long for a socket address is reached
through an open handle of its folder, never moved to a shared folder where another user could
take its name), and both ends check the other's user id (SO_PEERCRED): the service answers only
its own user, and the client talks only to a service run by its own user. The service refuses to
start in a folder another user may write (`check_private_folder`): there they could take the
socket's name first, and the engine would then refuse to talk to them and serve no one.
"""

from __future__ import annotations

import json
import math
import os
import queue
import socket
import socketserver
import stat
import struct
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb

from engine.governance.acts import Outcome, Request, perform
from engine.governance.errors import GovernanceError
from engine.governance.schema import create_governance_tables
from engine.governance.search import keep_search_index
from engine.governance.search_index import ChildRows, use_child_rows
from linkage_models.scoring import CompiledModel, ModelError

# Requests served at once (each on its own cursor); more wait for a free cursor.
SERVICE_CONNECTIONS = 4
# The search index's upkeep: every few seconds while people search (a search reads the records
# appended since the last upkeep from `records` itself), none when nobody has searched for a
# while (a bulk load pays nothing for it).
SEARCH_INDEX_UPKEEP_S = 5.0
SEARCH_INDEX_IDLE_AFTER_S = 900.0
UPKEEP_NICENESS = 10
# A request is a few bounded arguments: anything longer is not one.
MAX_REQUEST_BYTES = 64 * 1024
# Linux limits a socket address to 107 bytes; a longer path is reached through its folder.
_MAX_SOCKET_PATH = 100
_PEER_CREDENTIALS = struct.Struct("3i")  # pid, uid, gid


def socket_path_for(db_path: Path) -> Path:
    """The service socket of the master at `db_path`: `<db>.sock` beside it."""
    return db_path.absolute().with_name(db_path.name + ".sock")


def check_private_folder(folder: Path) -> None:
    """GovernanceError unless only this user (or root) can create files in `folder` (a folder
    that does not exist passes: opening the master there says so)."""
    try:
        status = folder.stat()
    except FileNotFoundError:
        return
    shared = status.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if shared or status.st_uid not in (os.geteuid(), 0):
        raise GovernanceError(
            f"the master's folder {folder} can be written by other users, who could take the "
            "name of its service socket: keep the master in a folder only you can write "
            "(chmod go-w)")


@contextmanager
def socket_address(path: Path) -> Iterator[str]:
    """An address to bind or connect the socket file `path`: the path itself, or if it is too
    long for a socket address, the same file reached through an open handle of its folder."""
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        yield os.fspath(path)
        return
    folder = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


def peer_uid(connection: socket.socket) -> int:
    """The user id of the process at the other end of a connected Unix socket."""
    credentials = connection.getsockopt(
        socket.SOL_SOCKET, socket.SO_PEERCRED, _PEER_CREDENTIALS.size)
    return _PEER_CREDENTIALS.unpack(credentials)[1]


class ServiceHandle:
    """A running service: its socket, the write lock to share with the engine's writer, and
    `stop()` (which closes the socket and removes its file)."""

    def __init__(
        self, server: _GovernanceServer, thread: threading.Thread, socket_path: Path,
    ) -> None:
        self._server = server
        self._thread = thread
        self.socket_path = socket_path
        self.write_lock: threading.Lock = server.write_lock

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server.search_index_upkeep.stop()
        self._server.close_cursors()
        with suppress(FileNotFoundError):
            self.socket_path.unlink()


def start_service(
    con: duckdb.DuckDBPyConnection, db_path: Path, model: CompiledModel,
    *, write_lock: threading.Lock | None = None,
) -> ServiceHandle:
    """Serve governance requests for the master `db_path` on its socket, in threads, with
    cursors of `con` (the engine's own connection) and the engine's `model`. Pass the lock the
    engine's writer holds while it writes a batch as `write_lock` (or use `handle.write_lock`)."""
    path = socket_path_for(db_path)
    check_private_folder(path.parent)
    create_governance_tables(con)
    _remove_stale_socket(path)
    server = _GovernanceServer(path, con, model, write_lock or threading.Lock())
    os.chmod(path, 0o600)
    thread = threading.Thread(
        target=server.serve_forever, name="governance-service", daemon=True
    )
    thread.start()
    return ServiceHandle(server, thread, path)


class SearchIndexUpkeep:
    """Keeps the search index up to date beside the engine's batches, so that no search waits
    for it: as the engine starts (the first search after a bulk load would otherwise build it:
    about two minutes at 1M children, longer than a client waits), then every `every_s` seconds
    while someone has searched in the last `idle_after_s` (`searched()`), re-sorting it there
    when its tail has grown long. Stopping interrupts it. A failure is reported and tried again
    whether or not anyone searches, after `every_s`, then twice as long after each further
    failure up to `idle_after_s` (a search meanwhile reads the tail from `records`, or builds
    the index itself if there is none)."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, model: CompiledModel,
        every_s: float = SEARCH_INDEX_UPKEEP_S, idle_after_s: float = SEARCH_INDEX_IDLE_AFTER_S,
    ) -> None:
        self._cursor = con.cursor()
        self._every_s, self._idle_after_s = every_s, idle_after_s
        self._last_search = -math.inf
        self._retry_at: float | None = None  # after a failure: when to try again
        self._failures = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(model,),
                                        name="search-index-upkeep", daemon=True)
        self._thread.start()

    def searched(self) -> None:
        """Someone searched: keep the index up to date for a while."""
        self._last_search = time.monotonic()

    def stop(self) -> None:
        self._stopping.set()
        self._cursor.interrupt()
        self._thread.join()
        self._cursor.close()

    def _run(self, model: CompiledModel) -> None:
        # background work: this thread yields the cores to searches and batches (Linux sets a
        # thread's nice value by its id; elsewhere it runs at the process's)
        with suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), UPKEEP_NICENESS)
        self._keep(model)
        while not self._stopping.wait(self._every_s):
            now = time.monotonic()
            if (now - self._last_search <= self._idle_after_s
                    or (self._retry_at is not None and now >= self._retry_at)):
                self._keep(model)

    def _keep(self, model: CompiledModel) -> None:
        try:
            keep_search_index(self._cursor, model)
        except duckdb.Error as err:
            if self._stopping.is_set():
                return
            wait_s = min(self._every_s * 2 ** self._failures, self._idle_after_s)
            self._failures += 1
            self._retry_at = time.monotonic() + wait_s
            print(f"search index upkeep failed ({str(err).splitlines()[0]}); "
                  f"trying again in {wait_s:g} s", file=sys.stderr)
        else:
            self._retry_at, self._failures = None, 0


def _answers(path: Path) -> bool:
    """Whether a service is listening on the socket `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe, socket_address(path) as to:
        try:
            probe.connect(to)
        except OSError:
            return False
    return True


def _remove_stale_socket(path: Path) -> None:
    try:
        owner = path.lstat().st_uid
    except FileNotFoundError:
        return
    if owner != os.getuid():
        raise GovernanceError(f"{path} belongs to another user (uid {owner}): not serving there")
    if _answers(path):
        raise GovernanceError(f"another engine already serves {path}")
    path.unlink()


class _GovernanceServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(
        self, path: Path, con: duckdb.DuckDBPyConnection, model: CompiledModel,
        write_lock: threading.Lock,
    ) -> None:
        self.model = model
        self.write_lock = write_lock
        self.acts_lock = threading.Lock()  # one act writes (appends to the audit chain) at a time
        self.cursors: queue.Queue[duckdb.DuckDBPyConnection] = queue.Queue()
        for _ in range(SERVICE_CONNECTIONS):
            self.cursors.put(con.cursor())
        # before the first request: no search may see rows deleted before the load
        use_child_rows(self.cursors.queue, ChildRows.loaded(con))
        with socket_address(path) as address:
            super().__init__(address, _RequestHandler)
        self.search_index_upkeep = SearchIndexUpkeep(con, model)

    def serve(self, request: Request) -> Outcome:
        """Perform `request` on a free cursor of the engine's connection."""
        if request.act == "search":
            self.search_index_upkeep.searched()
        cursor = self.cursors.get()
        try:
            return perform(cursor, request, lambda: self.model, write_lock=self.write_lock,
                           acts_lock=self.acts_lock)
        finally:
            self.cursors.put(cursor)

    def close_cursors(self) -> None:
        use_child_rows(self.cursors.queue, None)
        while not self.cursors.empty():
            self.cursors.get_nowait().close()


class _RequestHandler(socketserver.StreamRequestHandler):
    server: _GovernanceServer

    def handle(self) -> None:
        if peer_uid(self.request) != os.getuid():
            reply = {"ok": False, "error": "this service answers only its own user"}
        else:
            reply = self._reply(self.rfile.readline(MAX_REQUEST_BYTES + 1))
        self.wfile.write(json.dumps(reply, default=str).encode() + b"\n")

    def _reply(self, line: bytes) -> dict:
        try:
            if len(line) > MAX_REQUEST_BYTES:
                raise GovernanceError("request too long")
            try:
                request = Request.from_json(json.loads(line))
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise GovernanceError("malformed request") from None
            outcome = self.server.serve(request)
        except GovernanceError as err:
            return {"ok": False, "error": str(err)}
        except (duckdb.Error, ModelError) as err:
            return {"ok": False, "error": f"the engine could not do this: {_first_line(err)}"}
        return {"ok": True, "result": outcome.result, "child_ids": outcome.child_ids,
                "exit_status": outcome.exit_status}


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__
