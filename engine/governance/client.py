"""How a governance CLI verb reaches the master: through the running engine's service if one
answers on the master's socket, otherwise by opening the master file itself. Either way the
request is checked first here, and performed by the same `acts.perform`."""

from __future__ import annotations

import json
import os
import socket
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache
from pathlib import Path

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
    *, file_lock: AbstractContextManager | None = None,
) -> Outcome:
    """Perform `request` on the master at `db_path`: via its service when the engine is running,
    else on the file (with the model at `model_path`, default the shipped one, for a search;
    under `file_lock` when threads of one process share the file). GovernanceError (one line)
    if it is refused or cannot be done."""
    validate(request, DEFAULT_POLICY)  # hostile input never leaves this process
    outcome = send_request(socket_path_for(db_path), request)
    if outcome is not None:
        return outcome
    with file_lock or nullcontext():
        return _perform_on_file(db_path, request, model_path or DEFAULT_MODEL_PATH)


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


def _perform_on_file(db_path: Path, request: Request, model_path: Path) -> Outcome:
    try:
        con = open_master(db_path)
    except MasterStoreError as err:
        raise MasterUnavailable(str(err)) from err
    try:
        create_governance_tables(con)
        return perform(con, request, lambda: _load_model(model_path))
    finally:
        con.close()


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
