"""`python -m benchmarks.web_search --children 100000 [--rate 500] [--master FILE]`: how long a
practitioner waits for the search page, while `run --follow` streams updates into the master and
without it.

A warm master: the bulk load of the feeds of `--children` without their newest lines, or with
`--master FILE` a copy of an existing master (never the file itself), followed with the newest
lines of a small population generated with another seed, made new to it (record ids and the
feeds' own person keys prefixed, NHS numbers' first digit changed). The
search index is built before timing (how long that took is reported). A practitioner signs in
to the web application (its real Flask app, in this process) and searches by name and date of
birth of children sampled from the master, one after another, timed from the POST to the
rendered page: first while the engine follows the lines at `rate` lines/s (every page goes
through the engine's socket), then with the engine stopped (every page opens the file).
Writes benchmarks/results/web-search-latest.json (and web-search-<timestamp>.json).
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import json
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyotp
from rich.console import Console

from benchmarks.engine_bench import bulk_load
from benchmarks.feeds import HeldBackLine, cached_feeds, hold_back_newest
from benchmarks.follow import line_latencies, percentiles_ms, run_follow
from benchmarks.measure import copy_master
from benchmarks.plan import CACHE_DIR, RESULTS_DIR, FollowPlan
from benchmarks.report import machine, write_json
from engine.governance.service import socket_path_for

PASSWORD = "benchmark password"
SEARCHER = "bench-searcher"
# The follow lines of `--master`: a file name of their own (the master knows how far it read
# the suite's `tail.jsonl`), ids and person keys prefixed so that they are new to the master.
FOLLOW_FILE = "web-search.jsonl"
NEW_ID_PREFIX = "WS"
PERSON_KEY_FIELDS = ("registration_id", "claim_reference", "child_reference", "upn")
FOLLOW_LINES_PER_CHILD = 4  # a generated child has ~7 lines: enough children for the newest


@dataclass(frozen=True)
class WebSearchPlan:
    """Master size, follow rate and length, how many searches without the engine."""

    children: int = 100_000
    master: Path | None = None  # an existing master to copy and search (no bulk load)
    rate: int = 500
    follow_seconds: float = 60.0
    idle_searches: int = 200
    probes: int = 1_000
    seed: int = 1
    cache_dir: Path = CACHE_DIR
    out_dir: Path = RESULTS_DIR
    engine_timeout_s: float = 3600.0
    python: str = sys.executable


def web_search(plan: WebSearchPlan, console: Console) -> dict[str, Any]:
    """Run the benchmark and return its JSON-ready result (see the module docstring)."""
    held = int(plan.rate * plan.follow_seconds)
    if plan.master is None:
        folder = plan.cache_dir / str(plan.children)
        with console.status(f"feeds for {plan.children:,} children"):
            feeds = cached_feeds(folder, plan.children, plan.seed)
        run_dir = folder / "web-search"
        db, follow_lines, records = _bulk_loaded_master(plan, feeds.feeds, held, run_dir, console)
    else:
        run_dir = plan.cache_dir / "web-search-on-master"
        db, records = _copied_master(plan.master, run_dir, console)
        follow_lines = _other_childrens_lines(plan, held, run_dir, console) if held else []
    with console.status("building the search index"):
        index_seconds = _build_search_index(db)
    console.print(f"  search index built in {index_seconds:.1f} s")
    secret = _accredit_searcher(plan.python, db)
    probes = sample_probes(db, plan.probes, plan.seed)
    page = SearchPage(db, secret)

    followed = _search_while_following(plan, db, follow_lines, run_dir, page, probes, console)
    console.print(f"  searching without the engine: {plan.idle_searches} searches")
    idle = [page.search(probes[i % len(probes)])[0] for i in range(plan.idle_searches)]
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "plan": {"children": plan.children, "rate": plan.rate,
                 "follow_seconds": plan.follow_seconds, "seed": plan.seed,
                 "master": str(plan.master) if plan.master else None},
        "master": {"records": records, "children": _children(db)},
        "search_index_build_seconds": round(index_seconds, 1),
        **followed,
        "search_without_engine": _summary(idle),
        "largest_page_bytes": page.largest_page,
    }


def _search_while_following(
    plan: WebSearchPlan, db: Path, lines: list[HeldBackLine], run_dir: Path,
    page: SearchPage, probes: list[dict[str, str]], console: Console,
) -> dict[str, Any]:
    """The engine's follow latency and the searches' while it follows `lines` (both None when
    there are no lines: `--follow-seconds 0`)."""
    if not lines:
        return {"follow": None, "search_while_following": None}
    searcher = _Searcher(page, probes, socket_path_for(db))
    clock = AppendClock()
    follow = replace(FollowPlan(), rate=plan.rate)
    console.print(f"  following {len(lines):,} lines at {plan.rate}/s while searching")
    run = run_follow(plan.python, db, lines, plan.rate, follow, run_dir / "follow",
                     on_progress=clock.also(searcher.follow_progress), append_file=FOLLOW_FILE)
    return {
        "follow": {"offered_rate": plan.rate, "achieved_rate": round(run.achieved_rate, 1),
                   "latency_ms": percentiles_ms(run.latencies_ms),
                   "first_decision_latency_ms": percentiles_ms(
                       first_decision_latencies_ms(db, lines, clock))},
        "search_while_following": _summary(searcher.stop()),
    }


class AppendClock:
    """When the lines were appended: `run_follow` reports how many are done after each flushed
    chunk, and the clock notes the time."""

    def __init__(self) -> None:
        self._done: list[int] = []
        self._at: list[float] = []

    def also(self, on_progress: Callable[[int, int], None]) -> Callable[[int, int], None]:
        """A progress callback that notes the time, then calls `on_progress`."""
        def noted(appended: int, total: int) -> None:
            self._done.append(appended)
            self._at.append(time.time())
            on_progress(appended, total)
        return noted

    def appended_at(self, index: int) -> float:
        """Epoch seconds at which line `index` (from 0) had been flushed."""
        return self._at[bisect.bisect_right(self._done, index)]


def first_decision_latencies_ms(
    db: Path, lines: list[HeldBackLine], clock: AppendClock
) -> list[float]:
    """Each appended record's latency to its first decision (benchmarks.follow.line_latencies),
    timed from `clock`'s append times."""
    numbered = [(n, line) for n, line in enumerate(lines) if line.record_id is not None]
    appended = pa.table({
        "feed": [line.feed for _, line in numbered],
        "record_id": [line.record_id for _, line in numbered],
        "appended_at": [clock.appended_at(n) for n, _ in numbered],
    })
    return line_latencies(db, appended)["latency_ms"].to_pylist()


def _bulk_loaded_master(
    plan: WebSearchPlan, feeds: Path, held: int, run_dir: Path, console: Console
) -> tuple[Path, list[HeldBackLine], int]:
    """A master bulk-loaded from `feeds` without their `held` newest lines, and those lines."""
    with console.status(f"holding back the newest {held:,} lines"):
        split = hold_back_newest(feeds, held, run_dir / "bulk")
    db = run_dir / "master.duckdb"
    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)
    with console.status("bulk load"):
        bulk = bulk_load(plan.python, split.bulk_feeds, db, run_dir / "engine-bulk.log",
                         plan.engine_timeout_s)
    console.print(f"  warm master: {bulk['updates']:,} records in {bulk['seconds']} s")
    return db, split.held_back, bulk["updates"]


def _copied_master(master: Path, run_dir: Path, console: Console) -> tuple[Path, int]:
    """A copy of `master` (and its write-ahead log) in `run_dir`, and its record count."""
    run_dir.mkdir(parents=True, exist_ok=True)
    db = run_dir / "master.duckdb"
    with console.status(f"copying {master}"):
        copy_master(master, db)
    con = duckdb.connect(str(db), read_only=True)
    try:
        records = con.execute("SELECT count(*) FROM records").fetchall()[0][0]
    finally:
        con.close()
    console.print(f"  copied master: {records:,} records")
    return db, records


def _other_childrens_lines(
    plan: WebSearchPlan, held: int, run_dir: Path, console: Console
) -> list[HeldBackLine]:
    """The `held` newest lines of a small population of another seed, made new to a master."""
    others = max(1_000, held // FOLLOW_LINES_PER_CHILD)
    with console.status(f"feeds of {others:,} other children"):
        feeds = cached_feeds(run_dir / f"others-{others}", others, plan.seed + 1)
        split = hold_back_newest(feeds.feeds, held, run_dir / "unused-bulk")
        shutil.rmtree(split.bulk_feeds)
    return [as_other_child(line) for line in split.held_back]


def as_other_child(line: HeldBackLine) -> HeldBackLine:
    """`line` as a record of a child the master does not know: its record id and its feed's
    person keys prefixed `NEW_ID_PREFIX`, an NHS number's first digit changed (a bad line
    stays as it is)."""
    if line.record_id is None:
        return line
    record = json.loads(line.text)
    for field in ("record_id", *PERSON_KEY_FIELDS):
        if isinstance(record.get(field), str):
            record[field] = NEW_ID_PREFIX + record[field]
    nhs_number = record.get("nhs_number")
    if isinstance(nhs_number, str) and nhs_number[:1].isdigit():
        record["nhs_number"] = str((int(nhs_number[0]) + 5) % 10) + nhs_number[1:]
    return HeldBackLine(line.feed, record["record_id"], json.dumps(record) + "\n")


def _build_search_index(db: Path) -> float:
    """Seconds to bring the master's search index up to date (built from scratch the first
    time), as the first search would."""
    from engine.governance.search import prepare_search_index
    from linkage_models.scoring import DEFAULT_MODEL_PATH, CompiledModel

    model = CompiledModel.from_json(DEFAULT_MODEL_PATH)
    con = duckdb.connect(str(db))
    try:
        began = time.perf_counter()
        prepare_search_index(con, model)
        return time.perf_counter() - began
    finally:
        con.close()


class SearchPage:
    """A practitioner signed in to the web application, searching with a reason."""

    def __init__(self, db: Path, secret: str) -> None:
        from engine.web.app import create_app
        from engine.web.context import WebSettings

        self.client = create_app(WebSettings(db)).test_client()
        self.largest_page = 0
        form = self.client.get("/login")
        self.client.post("/login", data={"csrf_token": _token(form.text), "name": SEARCHER,
                                         "password": PASSWORD})
        code = self.client.get("/login/code")
        self.client.post("/login/code", data={"csrf_token": _token(code.text),
                                              "code": pyotp.TOTP(secret).now()})
        self.csrf = _token(self.client.get("/search").text)

    def search(self, probe: dict[str, str]) -> tuple[float, int]:
        """(seconds from POST to rendered page, HTTP status) for one search."""
        began = time.perf_counter()
        response = self.client.post("/search", data={
            "csrf_token": self.csrf, "reason": "benchmark", **probe})
        seconds = time.perf_counter() - began
        self.largest_page = max(self.largest_page, len(response.data))
        if response.status_code != 200:
            raise RuntimeError(f"search page answered {response.status_code}")
        return seconds, response.status_code


class _Searcher:
    """Searches one after another in a thread from the first appended line until stopped."""

    def __init__(self, page: SearchPage, probes: list[dict[str, str]], socket: Path) -> None:
        self.page, self.probes, self.socket = page, probes, socket
        self.seconds: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def follow_progress(self, appended: int, total: int) -> None:
        """Search from the first appended line to the last (the engine is serving then)."""
        if appended >= total:
            self._stop.set()
        elif self._thread.ident is None:
            self._thread.start()

    def stop(self) -> list[float]:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()
        return self.seconds

    def _run(self) -> None:
        # a page opening the file while the engine starts would take its lock from it
        while not self.socket.exists() and not self._stop.is_set():
            time.sleep(0.05)
        index = 0
        while not self._stop.is_set():
            self.seconds.append(self.page.search(self.probes[index % len(self.probes)])[0])
            index += 1


def _accredit_searcher(python: str, db: Path) -> str:
    """Add an admin (unless a benchmark's master has it already: `benchmarks --sizes` adds
    one to evaluate) and the practitioner who searches; the practitioner's TOTP secret."""
    until = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    base = [python, "-m", "engine", "users", "add", "--org", "benchmarks", "--accredited-until",
            until, "--db", str(db)]
    if not _has_user(db, "bench-admin"):
        subprocess.run([*base, "bench-admin", "--role", "admin"], check=True,
                       capture_output=True)
    added = subprocess.run(
        [*base, SEARCHER, "--role", "practitioner", "--by", "bench-admin", "--password-stdin",
         "--json"], input=PASSWORD + "\n", check=True, capture_output=True, text=True)
    return json.loads(added.stdout)["totp_secret"]


def _has_user(db: Path, name: str) -> bool:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return bool(con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'users'").fetchall()[0][0]
            and con.execute("SELECT count(*) FROM users WHERE name = ?", [name]).fetchall()[0][0])
    finally:
        con.close()


def sample_probes(db: Path, count: int, seed: int) -> list[dict[str, str]]:
    """Name ("first last") and date of birth of `count` children sampled from the master."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            f"""SELECT first_name, surname, date_of_birth FROM children
            WHERE status = 'active' AND first_name IS NOT NULL AND surname IS NOT NULL
              AND date_of_birth IS NOT NULL
            USING SAMPLE reservoir({int(count)} ROWS) REPEATABLE ({int(seed)})"""
        ).fetchall()
    finally:
        con.close()
    random.Random(seed).shuffle(rows)
    return [{"name": f"{first} {last}", "dob": born} for first, last, born in rows]


def _children(db: Path) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM children WHERE status <> 'merged'"
                           ).fetchall()[0][0]
    finally:
        con.close()


def _summary(seconds: list[float]) -> dict[str, Any]:
    return {"searches": len(seconds), "ms": percentiles_ms([s * 1000 for s in seconds])}


def _token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.web_search",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("--children", type=int, default=WebSearchPlan.children)
    parser.add_argument("--rate", type=int, default=WebSearchPlan.rate,
                        help="lines/s the engine follows")
    parser.add_argument("--follow-seconds", type=float, default=WebSearchPlan.follow_seconds,
                        help="0: search only without the engine")
    parser.add_argument("--master", type=Path,
                        help="search a copy of this master (no bulk load), following lines of "
                             "other children")
    parser.add_argument("--idle-searches", type=int, default=WebSearchPlan.idle_searches)
    parser.add_argument("--results-name", default="web-search",
                        help="results file prefix (NAME-latest.json, NAME-<timestamp>.json)")
    args = parser.parse_args(argv)
    if args.master is not None and not args.master.is_file():
        parser.error(f"no master at {args.master}")
    plan = WebSearchPlan(children=args.children, rate=args.rate, master=args.master,
                         follow_seconds=args.follow_seconds, idle_searches=args.idle_searches)
    console = Console(stderr=True)
    result = web_search(plan, console)
    for path in write_json(result, plan.out_dir, args.results_name):
        console.print(f"wrote {path}")
    print(json.dumps({key: result[key] for key in (
        "follow", "search_while_following", "search_without_engine")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
