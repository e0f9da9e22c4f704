"""How a governance CLI verb reaches the master: through the running engine's service if one
answers on the master's socket, otherwise by opening the master file itself. Either way the
request is checked first here, and performed by the same `acts.perform`."""

from __future__ import annotations

import json
import os
import socket
import threading
from functools import lru_cache
from pathlib import Path

import duckdb

from engine.governance.acts import Outcome, Request, perform, validate
from engine.governance.errors import GovernanceError, MasterUnavailable
from engine.governance.policy import DEFAULT_POLICY
from engine.governance.schema import create_governance_tables
from engine.governance.service import (
    MAX_REQUEST_BYTES,
    peer_uid,
    socket_address,
    socket_path_for,
)
from engine.master_store import MasterStoreError, open_master
from linkage_models.scoring import DEFAULT_MODEL_PATH, CompiledModel, ModelError

# How long to wait for the engine's reply (a search waits for the batch being written).
REPLY_TIMEOUT_S = 120.0


def dispatch(
    db_path: Path, request: Request, model_path: Path | None = None,
    *, master_file: MasterFile | None = None,
) -> Outcome:
    """Perform `request` on the master at `db_path`: via its service when the engine is running,
    else on the file (with the model at `model_path`, default the shipped one, for a search),
    opened for this act or kept open in `master_file` for several. GovernanceError (one line)
    if it is refused or cannot be done."""
    validate(request, DEFAULT_POLICY)  # hostile input never leaves this process
    outcome = send_request(socket_path_for(db_path), request)
    if outcome is not None:
        return outcome
    if master_file is not None:
        return master_file.perform(request)
    with MasterFile(db_path, model_path) as master:
        return master.perform(request)


class MasterFile:
    """The master file when no engine serves it: opened at the first act performed on it and
    kept open for the next ones until `close()` (a web page's session check and search pay
    for one opening), under `lock` (threads of one process take turns on the file)."""

    def __init__(
        self, db_path: Path, model_path: Path | None = None, lock: threading.Lock | None = None
    ) -> None:
        self.db_path = db_path
        self.model_path = model_path or DEFAULT_MODEL_PATH
        self._lock = lock or threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None

    def perform(self, request: Request) -> Outcome:
        """Perform `request` on the file, opening it first if this is the first act."""
        if self._con is None:
            self._lock.acquire()
            try:
                self._con = _open_for_acts(self.db_path)
            except BaseException:
                self._lock.release()
                raise
        return perform(self._con, request, lambda: _load_model(self.model_path))

    def close(self) -> None:
        """Close the file if an act opened it (the next act opens it again)."""
        if self._con is None:
            return
        try:
            self._con.close()
        finally:
            self._con = None
            self._lock.release()

    def __enter__(self) -> MasterFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def send_request(socket_path: Path, request: Request) -> Outcome | None:
    """The service's outcome for `request`, or None if no service answers on `socket_path`.
    GovernanceError if the service there is run by another user (it never sees the request)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        try:
            with socket_address(socket_path) as address:
                connection.connect(address)
        except OSError:
            return None
        owner = peer_uid(connection)
        if owner != os.getuid():
            raise GovernanceError(
                f"{socket_path} is served by another user (uid {owner}): not sending to it")
        connection.settimeout(REPLY_TIMEOUT_S)
        try:
            connection.sendall(json.dumps(request.to_json()).encode() + b"\n")
            reply = _read_line(connection)
        except OSError as err:
            raise GovernanceError(f"the engine's service did not answer: {err}") from err
    try:
        data = json.loads(reply)
    except json.JSONDecodeError:
        raise GovernanceError("the engine's service sent a malformed reply") from None
    if not data.get("ok"):
        raise GovernanceError(str(data.get("error", "refused")))
    return Outcome(data["result"], data["child_ids"], data["exit_status"])


def _read_line(connection: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while not chunks or not chunks[-1].endswith(b"\n"):
        chunk = connection.recv(MAX_REQUEST_BYTES)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _open_for_acts(db_path: Path) -> duckdb.DuckDBPyConnection:
    try:
        con = open_master(db_path)
    except MasterStoreError as err:
        raise MasterUnavailable(str(err)) from err
    try:
        create_governance_tables(con)
    except BaseException:
        con.close()
        raise
    return con


def _load_model(path: Path) -> CompiledModel:
    try:
        version = path.stat().st_mtime_ns
    except OSError:
        version = None  # from_json says what is wrong with the path
    try:
        return _compiled(path, version)
    except ModelError as err:
        raise GovernanceError(str(err)) from err


@lru_cache(maxsize=4)
def _compiled(path: Path, _version: int | None) -> CompiledModel:
    """The model at `path` compiled once per version of the file (a web server searches often)."""
    return CompiledModel.from_json(path)
