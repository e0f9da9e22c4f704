"""Backups of the master: a consistent copy of its file with a manifest, and putting one back.

A backup folder holds `master.duckdb` (the master as of one committed batch) and `manifest.json`
(what it is: format, schema version, engine and DuckDB versions, time, the feed positions it holds,
counts, size and SHA-256). The manifest is written last, so a folder without one is a partial
backup. `restore_backup` refuses anything that is not a whole backup of this schema, and moves the
master it replaces aside rather than deleting it. A restored master resumes reading the feeds at
its own positions (engine.feed_positions): everything after the backup is read again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import duckdb

from engine.feed_positions import load_feed_positions
from engine.master_store import SCHEMA_VERSION, scalar

BACKUP_FORMAT = "contactpoint-master-backup/1"
MANIFEST = "manifest.json"
MASTER_COPY = "master.duckdb"


class BackupError(RuntimeError):
    """A backup that cannot be taken or restored (one line)."""


def write_backup(con: duckdb.DuckDBPyConnection, out_dir: Path) -> dict[str, Any]:
    """Copy the master open on `con` into `out_dir` (new or empty) and return its manifest.

    The caller makes sure no batch or act writes meanwhile (the engine's write lock, or a master
    it opened itself): a checkpoint moves every committed batch into the file, which is then
    copied as it stands. `con` may be inside a transaction that has written nothing yet."""
    db_path = Path(scalar(
        con, "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ))
    _prepare_empty_folder(out_dir)
    manifest = {
        "format": BACKUP_FORMAT,
        "schema_version": scalar(
            con, "SELECT value FROM master_meta WHERE key = 'schema_version'"),
        "engine_version": _engine_version(),
        "duckdb_version": duckdb.__version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "master": str(db_path.absolute()),
        "feed_positions": {
            file: {"byte_offset": offset, "line": line}
            for file, (offset, line) in sorted(load_feed_positions(con).items())
        },
        "counts": {table: scalar(con, f"SELECT count(*) FROM {table}")
                   for table in ("children", "links", "dead_letters")},
    }
    con.execute("CHECKPOINT")
    copy = out_dir / MASTER_COPY
    _copy_in_a_child_process(db_path, copy)
    _fsync(copy)
    manifest |= {"file": MASTER_COPY, "bytes": copy.stat().st_size, "sha256": _sha256(copy)}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    _fsync(out_dir / MANIFEST)
    return manifest


def restore_backup(from_dir: Path, db_path: Path) -> dict[str, Any]:
    """Put the backup in `from_dir` in place as the master `db_path` (which no process may hold);
    the master it replaces, if any, is moved aside. Returns the manifest, with `replaced`: where
    the old master went (None if there was none)."""
    manifest = read_manifest(from_dir)
    _refuse_if_in_use(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    incoming = db_path.with_name(db_path.name + ".restoring")
    try:
        shutil.copyfile(from_dir / MASTER_COPY, incoming)
        _fsync(incoming)
    except OSError as err:
        incoming.unlink(missing_ok=True)
        raise BackupError(f"cannot copy the backup to {incoming}: {err.strerror}") from err
    if _sha256(incoming) != manifest["sha256"]:
        incoming.unlink()
        raise BackupError(f"{from_dir} is damaged: {MASTER_COPY} does not match its manifest")
    replaced = _move_aside(db_path)
    os.replace(incoming, db_path)
    return {**manifest, "restored_to": str(db_path), "replaced": replaced and str(replaced)}


def read_manifest(from_dir: Path) -> dict[str, Any]:
    """The manifest of a whole backup of this engine's schema; BackupError otherwise."""
    try:
        manifest = json.loads((from_dir / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(
            f"{from_dir} is not a ContactPoint backup, or a partial one (no {MANIFEST})"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BackupError(f"cannot read {from_dir / MANIFEST}: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BACKUP_FORMAT:
        raise BackupError(f"{from_dir} is not a ContactPoint backup (format {BACKUP_FORMAT})")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise BackupError(
            f"{from_dir} holds a master of schema version {manifest.get('schema_version')}, "
            f"this engine writes version {SCHEMA_VERSION}"
        )
    copy = from_dir / MASTER_COPY
    if not copy.is_file() or copy.stat().st_size != manifest.get("bytes"):
        raise BackupError(f"{from_dir} is a partial backup: {MASTER_COPY} is missing or cut short")
    return manifest


def _copy_in_a_child_process(master: Path, copy: Path) -> None:
    """Copy the master file without opening it in this process: closing any file descriptor of a
    file drops every POSIX lock the process holds on it, DuckDB's lock on the master among them,
    which would let a second process open the master while this one writes it."""
    copied = subprocess.run(["cp", "--", str(master), str(copy)], capture_output=True, text=True)
    if copied.returncode:
        raise BackupError(f"copying {master} failed: {copied.stderr.strip() or copied.returncode}")


def _prepare_empty_folder(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise BackupError(f"{out_dir} exists and is not an empty folder: choose a new one")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BackupError(f"cannot create {out_dir}: {err.strerror}") from err


def _refuse_if_in_use(db_path: Path) -> None:
    """DuckDB locks a master file while a process holds it (an engine running, a verb)."""
    if not db_path.exists():
        return
    try:
        duckdb.connect(str(db_path), read_only=True).close()
    except duckdb.IOException as err:
        if "lock" in str(err).lower():
            raise BackupError(
                f"master database {db_path} is in use by another process: stop it first"
            ) from None
    except duckdb.Error:
        pass  # a damaged master is what a restore is for


def _move_aside(db_path: Path) -> Path | None:
    """Rename the master (and its write-ahead log) to `<db>.before-restore-<time>`."""
    if not db_path.exists():
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    aside = db_path.with_name(f"{db_path.name}.before-restore-{stamp}")
    if aside.exists():
        raise BackupError(f"{aside} exists already: try again")
    os.replace(db_path, aside)
    wal = db_path.with_name(db_path.name + ".wal")
    if wal.exists():  # never replay the old master's log onto the restored file
        os.replace(wal, aside.with_name(aside.name + ".wal"))
    return aside


def _engine_version() -> str:
    try:
        return version("contactpoint-stream")
    except PackageNotFoundError:
        return "unknown"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
