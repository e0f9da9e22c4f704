"""Measured subprocesses: wall time and resident memory (RSS) of a command's whole process tree.

    with MeasuredProcess(cmd, log) as proc:   # a long-running one (`run --follow`)
        ...; proc.wait_until_idle(); proc.stop()
    result = run_measured(cmd, log, timeout_s=600)   # one that ends by itself

RSS is sampled every `SAMPLE_INTERVAL_S` (psutil, process and descendants), so the peak is the
highest sample: a spike shorter than the interval can be missed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SAMPLE_INTERVAL_S = 0.1
MIB = 2**20


class MeasuredCommandError(RuntimeError):
    """A measured command failed or ran out of time; the message ends with its stderr tail."""


@dataclass(frozen=True)
class RssSample:
    """Resident memory of the process tree at `at` (seconds since the process started)."""

    at: float
    rss_mib: float


@dataclass(frozen=True)
class MeasuredRun:
    """What a finished command did: exit status, wall seconds, peak RSS and its stdout."""

    returncode: int
    seconds: float
    peak_rss_mib: float
    stdout: str
    samples: list[RssSample] = field(repr=False)

    def last_json_line(self) -> str:
        """The command's last stdout line that looks like a JSON object (its `--json` result)."""
        lines = [line for line in self.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise MeasuredCommandError(f"no JSON object on stdout: {self.stdout[-300:]!r}")
        return lines[-1]


def copy_master(master: Path, target: Path) -> None:
    """Copy the master file `master` and its write-ahead log, if any, to `target` (and its log),
    each written through to disk before this returns. A fresh copy leaves gigabytes of dirty
    pages that the kernel writes back ~30 s later, and the engine's commits, each of which syncs
    its log, then wait behind that: at 1M children two commits of 160-270 ms in the middle of
    every follow measurement, which set its p99 (docs/scale.md, midmorning of 2026-12-04)."""
    for source, copy in ((master, target), (_wal_of(master), _wal_of(target))):
        copy.unlink(missing_ok=True)
        if source.exists():
            shutil.copyfile(source, copy)
            with copy.open("rb") as handle:
                os.fsync(handle.fileno())


def _wal_of(db: Path) -> Path:
    """The write-ahead log DuckDB keeps beside the database file `db`."""
    return db.with_name(db.name + ".wal")


def run_measured(cmd: Sequence[str], log: Path, timeout_s: float) -> MeasuredRun:
    """Run `cmd` to its end (stderr to `log`), measuring it; MeasuredCommandError if it fails
    or takes longer than `timeout_s` (then it is stopped)."""
    with MeasuredProcess(cmd, log) as proc:
        return proc.succeeded(proc.wait(timeout_s))


class MeasuredProcess:
    """A started command whose tree's RSS is sampled in a background thread until it ends."""

    def __init__(self, cmd: Sequence[str], log: Path) -> None:
        self.cmd = list(cmd)
        self.log = log
        self.samples: list[RssSample] = []
        self._popen: subprocess.Popen[str] | None = None
        self._sampler = threading.Thread(target=self._sample_rss, daemon=True)
        self._started = 0.0

    def __enter__(self) -> MeasuredProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._started = time.monotonic()
        with self.log.open("w", encoding="utf-8") as stderr:
            self._popen = subprocess.Popen(
                self.cmd, stdout=subprocess.PIPE, stderr=stderr, text=True
            )
        self._process = psutil.Process(self._popen.pid)
        self._sampler.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._popen is not None and self._popen.poll() is None:
            self._popen.kill()
            self._popen.wait()

    @property
    def elapsed(self) -> float:
        """Seconds since the process started."""
        return time.monotonic() - self._started

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def peak_rss_mib(self) -> float:
        """The highest RSS sample so far."""
        return max((s.rss_mib for s in self.samples), default=0.0)

    def cpu_share(self, interval_s: float) -> float:
        """CPU used by the process over the next `interval_s`, as a share of one core."""
        try:
            return self._process.cpu_percent(interval=interval_s) / 100
        except psutil.NoSuchProcess:
            return 0.0

    def wait_for_stderr(self, text: str, max_s: float) -> float:
        """Block until `text` appears in the process's stderr log (or it ends, or `max_s`);
        returns the seconds waited."""
        began = time.monotonic()
        while time.monotonic() - began < max_s and self.running:
            if text in self.log.read_text(encoding="utf-8", errors="replace"):
                break
            time.sleep(0.2)
        return time.monotonic() - began

    def wait_until_idle(
        self, *, below: float, settle_s: float, min_s: float, max_s: float
    ) -> float:
        """Block until the process has used less than `below` of a core for `settle_s` in a
        row (and at least `min_s` have passed), or `max_s`; returns the seconds waited."""
        began = time.monotonic()
        time.sleep(min_s)
        quiet_since: float | None = None
        while time.monotonic() - began < max_s and self._popen.poll() is None:
            if self.cpu_share(0.5) < below:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle_s:
                    break
            else:
                quiet_since = None
        return time.monotonic() - began

    def succeeded(self, run: MeasuredRun) -> MeasuredRun:
        """`run` if it exited 0, else MeasuredCommandError with the tail of its stderr."""
        if run.returncode != 0:
            raise MeasuredCommandError(
                f"{' '.join(self.cmd[:4])} … exited {run.returncode}: {_tail(self.log)}"
            )
        return run

    def stop(self, timeout_s: float) -> MeasuredRun:
        """SIGTERM (the engine finishes its current batch and prints its summary), then wait."""
        self._popen.send_signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def wait(self, timeout_s: float) -> MeasuredRun:
        """Wait for the end (killing it after `timeout_s`) and return what it did."""
        try:
            stdout, _ = self._popen.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as err:
            self._popen.kill()
            self._popen.communicate()
            raise MeasuredCommandError(
                f"{' '.join(self.cmd[:4])} … still running after {timeout_s:.0f} s: "
                f"{_tail(self.log)}"
            ) from err
        seconds = self.elapsed
        self._sampler.join(timeout=1)
        return MeasuredRun(
            self._popen.returncode, round(seconds, 3), round(self.peak_rss_mib, 1), stdout,
            list(self.samples),
        )

    def _sample_rss(self) -> None:
        while self._popen.poll() is None:
            rss = _tree_rss(self._process)
            if rss:
                self.samples.append(RssSample(round(self.elapsed, 2), rss / MIB))
            time.sleep(SAMPLE_INTERVAL_S)


def _tree_rss(process: psutil.Process) -> int:
    """RSS in bytes of `process` and all its descendants (0 once it is gone)."""
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def _tail(log: Path, lines: int = 5) -> str:
    """The last lines of a stderr log, on one line."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no stderr log)"
    return " | ".join(text.strip().splitlines()[-lines:])
