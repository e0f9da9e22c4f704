"""Feed lines: record ids, errors and bad lines, event-time order per monthly file, and truth."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from typing import IO

from streams.canonical import FEEDS
from streams.generator.bad_lines import bad_line
from streams.generator.config import BAD_KINDS, GeneratorConfig
from streams.generator.errors import ErrorInjector
from streams.generator.feeds import Record
from streams.generator.population import Child
from streams.generator.roles import ROLES
from streams.generator.summary import GenerateSummary

TRUTH_HEADER = "feed,record_id,person_id,bad_kind\n"
_RECORD_ID_PREFIX = {"gro": "G", "dwp": "D", "nhs": "N", "census": "C"}

# (seconds since the snapshot, sequence, feed, line, record_id or None, person_id, bad kind)
_Line = tuple[int, int, str, str, str | None, str, str]


class FeedWriter:
    """Turns clean records into lines of `OUT/feeds/<feed>/YYYY-MM.jsonl` and rows of truth.csv.

    Lines dated at the snapshot instant (second 0) are written at once; later ones wait in their
    month's buffer until `flush_month` sorts them by event time.
    """

    def __init__(self, rng: random.Random, config: GeneratorConfig, out: Path,
                 summary: GenerateSummary) -> None:
        self.rng = rng
        self.summary = summary
        self._end_second = (period_end(config) - config.start_date).days * 86400
        self._bad_line_rate = config.bad_line_rate
        self._injectors = {feed: ErrorInjector(rng, config.errors[feed], ROLES[feed])
                           for feed in FEEDS}
        period_days = self._end_second // 86400
        days = [config.start_date + dt.timedelta(days=n) for n in range(period_days)]
        self._day_texts = [day.isoformat() for day in days]
        start = config.start_date
        self._day_months = [(d.year - start.year) * 12 + d.month - start.month for d in days]
        self._day_files = [f"{day.year:04d}-{day.month:02d}.jsonl" for day in days]
        self._ids = {feed: 0 for feed in FEEDS}
        self._sequence = 0
        self._pending: dict[int, list[_Line]] = {}
        self._handles: dict[str, tuple[str, IO[str]]] = {}
        self._line_numbers: dict[str, int] = {}
        self._feeds_dir = out / "feeds"
        for feed in FEEDS:
            folder = self._feeds_dir / feed
            folder.mkdir(parents=True, exist_ok=True)
            for stale in sorted(folder.glob("*.jsonl")):  # a previous run's files
                stale.unlink()
        self._truth = (out / "truth.csv").open("w", encoding="utf-8", newline="")
        self._truth.write(TRUTH_HEADER)

    def emit(self, feed: str, event: str, second: int, child: Child, body: Record) -> None:
        """One record of `feed` about `child` at `second` after the snapshot instant, with the
        clean `body` from `feeds` (records after the simulated period are not written)."""
        if second >= self._end_second:
            return
        self._ids[feed] += 1
        record_id = f"{_RECORD_ID_PREFIX[feed]}{self._ids[feed]:09d}"
        record = {"record_id": record_id, "event_time": self._timestamp(second),
                  "event": event, **body}
        self._injectors[feed].inject(record, child)
        bad_kind = ""
        truth_id: str | None = record_id
        if self.rng.random() < self._bad_line_rate:
            bad = bad_line(self.rng, self.rng.choice(BAD_KINDS), record, ROLES[feed])
            line, bad_kind = bad.text, bad.kind
            truth_id = record_id if bad.keeps_record_id else None
        else:
            line = json.dumps(record)
        self._sequence += 1
        entry = (second, self._sequence, feed, line, truth_id, child.person_id, bad_kind)
        if second == 0:
            self._write(entry)
        else:
            self._pending.setdefault(self._day_months[second // 86400], []).append(entry)

    def flush_month(self, month: int) -> None:
        """Writes every buffered line of `month` in event-time order and closes its files."""
        entries = self._pending.pop(month, [])
        entries.sort()  # (second, sequence) is unique, so the rest never decides
        for entry in entries:
            self._write(entry)
        for _, handle in self._handles.values():
            handle.close()
        self._handles.clear()

    def close(self) -> GenerateSummary:
        """Drops what lies beyond the period, closes the truth and fills the error counts."""
        self._pending.clear()
        self._truth.close()
        self.summary.errors = {feed: dict(injector.counts)
                               for feed, injector in self._injectors.items()}
        return self.summary

    def _timestamp(self, second: int) -> str:
        """`YYYY-MM-DDTHH:MM:SSZ` of `second` after the snapshot instant."""
        day, rest = divmod(second, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, seconds = divmod(rest, 60)
        return f"{self._day_texts[day]}T{hours:02d}:{minutes:02d}:{seconds:02d}Z"

    def _write(self, entry: _Line) -> None:
        second, _, feed, line, truth_id, person_id, bad_kind = entry
        relative = f"{feed}/{self._day_files[second // 86400]}"
        current = self._handles.get(feed)
        if current is None or current[0] != relative:
            if current is not None:
                current[1].close()
            current = (relative, (self._feeds_dir / relative).open("a", encoding="utf-8"))
            self._handles[feed] = current
        current[1].write(line + "\n")
        number = self._line_numbers.get(relative, 0) + 1
        self._line_numbers[relative] = number
        if truth_id is None:
            self._truth.write(f"{feed},@{relative}:{number},,{bad_kind}\n")
        else:
            self._truth.write(f"{feed},{truth_id},{person_id},{bad_kind}\n")
        self.summary.records[feed] += 1
        if bad_kind:
            self.summary.bad_lines[bad_kind] = self.summary.bad_lines.get(bad_kind, 0) + 1


def period_end(config: GeneratorConfig) -> dt.date:
    """The first day after the simulated period (`years` after the start)."""
    start = config.start_date
    return start.replace(year=start.year + config.years, day=min(start.day, 28))
