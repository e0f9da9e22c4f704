"""Following, the master is checkpointed while the feeds are quiet.

DuckDB checkpoints at a commit once the write-ahead log passes `store.checkpoint_threshold_mb`
(engine.config): following 1,000 lines/s that is every few minutes, and at 1M children a stall of
seconds (a checkpoint rewrites every row group the log's moves touched) for whatever lines are
waiting then. While following, the engine checkpoints instead once no batch has been written for
`store.idle_checkpoint_after_s` and the log holds at least `store.idle_checkpoint_min_mb`: the
stall falls in a pause of the feeds, and the log a restart would replay stays short.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import duckdb


class IdleCheckpointer:
    """A thread that checkpoints the master (on its own cursor of the engine's connection,
    under the engine's write lock) once writes have paused; `wrote()` is called, under that
    lock, after every batch."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        wal: Path,
        write_lock: contextlib.AbstractContextManager,
        after_s: float,
        min_mb: float,
    ) -> None:
        self._cursor = con.cursor()
        self._wal = wal
        self._lock = write_lock
        self._after_s = after_s
        self._min_bytes = min_mb * 1024 * 1024
        self._last_write = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="idle-checkpoint", daemon=True)
        self._thread.start()

    def wrote(self) -> None:
        self._last_write = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._cursor.close()

    def _run(self) -> None:
        while not self._stop.wait(self._after_s / 4):
            if self._due():
                with self._lock:
                    if self._due():  # no batch came while waiting for the lock
                        self._checkpoint()

    def _due(self) -> bool:
        if time.monotonic() - self._last_write < self._after_s:
            return False
        try:
            return self._wal.stat().st_size > self._min_bytes
        except FileNotFoundError:  # nothing written since the last checkpoint
            return False

    def _checkpoint(self) -> None:
        try:
            self._cursor.execute("CHECKPOINT")
        except duckdb.TransactionException:
            # DuckDB documents that a checkpoint fails while other transactions run (2.0.1 let
            # one through beside a search's): if so, it is tried again at the next tick
            return
