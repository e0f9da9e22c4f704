"""`python -m benchmarks.web_search --children 100000 [--rate 500]`: how long a practitioner waits
for the search page, while `run --follow` streams updates into the master and without it.

A warm master (bulk load of the feeds without their newest lines), a practitioner signed in to
the web application (its real Flask app, in this process), then searches by name and date of
birth of children sampled from the master, one after another, timed from the POST to the
rendered page: first while the engine follows the held-back lines at `rate` lines/s (every page
goes through the engine's socket), then with the engine stopped (every page opens the file).
Writes benchmarks/results/web-search-latest.json (and web-search-<timestamp>.json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyotp
from rich.console import Console

from benchmarks.engine_bench import bulk_load
from benchmarks.feeds import cached_feeds, hold_back_newest
from benchmarks.follow import percentiles_ms, run_follow
from benchmarks.plan import CACHE_DIR, RESULTS_DIR, FollowPlan
from benchmarks.report import machine, write_json
from engine.governance.service import socket_path_for

PASSWORD = "benchmark password"
SEARCHER = "bench-searcher"


@dataclass(frozen=True)
class WebSearchPlan:
    """Master size, follow rate and length, how many searches without the engine."""

    children: int = 100_000
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
    folder = plan.cache_dir / str(plan.children)
    run_dir = folder / "web-search"
    with console.status(f"feeds for {plan.children:,} children"):
        feeds = cached_feeds(folder, plan.children, plan.seed)
    held = int(plan.rate * plan.follow_seconds)
    with console.status(f"holding back the newest {held:,} lines"):
        split = hold_back_newest(feeds.feeds, held, run_dir / "bulk")
    db = run_dir / "master.duckdb"
    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)
    with console.status(f"bulk load of {feeds.lines - held:,} lines"):
        bulk = bulk_load(plan.python, split.bulk_feeds, db, run_dir / "engine-bulk.log",
                         plan.engine_timeout_s)
    console.print(f"  warm master: {bulk['updates']:,} records in {bulk['seconds']} s")
    secret = _accredit_searcher(plan.python, db)
    probes = _probes(db, plan.probes, plan.seed)
    page = SearchPage(db, secret)

    searcher = _Searcher(page, probes, socket_path_for(db))
    follow = replace(FollowPlan(), rate=plan.rate)
    console.print(f"  following {held:,} lines at {plan.rate}/s while searching")
    run = run_follow(plan.python, db, split.held_back, plan.rate, follow, run_dir / "follow",
                     on_progress=searcher.follow_progress)
    following = searcher.stop()
    console.print(f"  searching without the engine: {plan.idle_searches} searches")
    idle = [page.search(probes[i % len(probes)])[0] for i in range(plan.idle_searches)]
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "plan": {"children": plan.children, "rate": plan.rate,
                 "follow_seconds": plan.follow_seconds, "seed": plan.seed},
        "master": {"records": bulk["updates"], "children": _children(db)},
        "follow": {"offered_rate": plan.rate, "achieved_rate": round(run.achieved_rate, 1),
                   "latency_ms": percentiles_ms(run.latencies_ms)},
        "search_while_following": _summary(following),
        "search_without_engine": _summary(idle),
        "largest_page_bytes": page.largest_page,
    }


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
    """Add an admin and the practitioner who searches; the practitioner's TOTP secret."""
    until = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    base = [python, "-m", "engine", "users", "add", "--org", "benchmarks", "--accredited-until",
            until, "--db", str(db)]
    subprocess.run([*base, "bench-admin", "--role", "admin"], check=True, capture_output=True)
    added = subprocess.run(
        [*base, SEARCHER, "--role", "practitioner", "--by", "bench-admin", "--password-stdin",
         "--json"], input=PASSWORD + "\n", check=True, capture_output=True, text=True)
    return json.loads(added.stdout)["totp_secret"]


def _probes(db: Path, count: int, seed: int) -> list[dict[str, str]]:
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
    parser.add_argument("--follow-seconds", type=float, default=WebSearchPlan.follow_seconds)
    args = parser.parse_args(argv)
    plan = WebSearchPlan(children=args.children, rate=args.rate,
                         follow_seconds=args.follow_seconds)
    console = Console(stderr=True)
    result = web_search(plan, console)
    for path in write_json(result, plan.out_dir, "web-search"):
        console.print(f"wrote {path}")
    print(json.dumps({key: result[key] for key in (
        "follow", "search_while_following", "search_without_engine")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
