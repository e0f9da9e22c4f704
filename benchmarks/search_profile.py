"""`python -m benchmarks.search_profile --master FILE [--probes 60] [--scan-children] [--brief]`:
the CPU each query of a search costs, on an open connection to a master (read-only) whose
search index is built (the engine or `benchmarks.web_search` builds it), for name and date of
birth probes of children sampled from it; the children's rows found as the engine's service
finds them (by row_no, search_index.ChildRows), or with `--scan-children` as a page on the master
file does; with `--brief`, only the fields of a list of results (the web results page), else
the full view.

Each query `search_children` sends is timed with the process's CPU clock (DuckDB's threads
included) and wall clock; the summary gives p50 and p95 per query (by its first words) and for
the whole search. The first 10 searches warm the cache and are left out. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from benchmarks.follow import percentiles_ms
from benchmarks.web_search import sample_probes
from engine.governance import search
from engine.governance.policy import DEFAULT_POLICY
from engine.governance.search_index import ChildRows, use_child_rows
from linkage_models.scoring import DEFAULT_MODEL_PATH, CompiledModel

WARM_UP_SEARCHES = 10


class TimedConnection:
    """A DuckDB connection whose `execute` records the CPU and wall ms of each query."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.cpu_ms: dict[str, list[float]] = defaultdict(list)

    def execute(self, sql: str, *parameters: Any) -> duckdb.DuckDBPyConnection:
        began = time.process_time()
        result = self.con.execute(sql, *parameters)
        rows = result.fetchall() if result.description else None
        self.cpu_ms[re.sub(r"\s+", " ", sql.strip())[:60]].append(
            (time.process_time() - began) * 1000)
        if rows is None:
            return result
        return _Rows(rows, [column[0] for column in result.description])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)


class _Rows:
    """A fetched result, as `fetchall()` or as `fetchnumpy()` (one array a column)."""

    def __init__(self, rows: list[tuple], names: list[str]) -> None:
        self.rows, self.names = rows, names

    def fetchall(self) -> list[tuple]:
        return self.rows

    def fetchnumpy(self) -> dict[str, np.ndarray]:
        columns = list(zip(*self.rows, strict=True)) or [()] * len(self.names)
        return {name: np.array(values) for name, values in zip(self.names, columns, strict=True)}


def profile(db: Path, probes: int, warm_up: int = WARM_UP_SEARCHES,
            scan_children: bool = False, brief: bool = False) -> dict[str, Any]:
    """Per-query and per-search CPU ms of `probes` searches on `db`, after `warm_up` ones."""
    model = CompiledModel.from_json(DEFAULT_MODEL_PATH)
    sampled = sample_probes(db, probes + warm_up, seed=7)
    fields = search.LIST_VIEW if brief else search.FULL_VIEW
    con = duckdb.connect(str(db), read_only=True)
    try:
        timed = TimedConnection(con)
        if not scan_children:
            use_child_rows([timed], ChildRows.loaded(con))
        cpu, wall = [], []
        for sample in sampled:
            probe = search.probe_from_inputs(sample["name"], str(sample["dob"]), None)
            began_cpu, began_wall = time.process_time(), time.perf_counter()
            con.begin()
            search.search_children(timed, model, probe, search.viewer_for("practitioner"),
                                   DEFAULT_POLICY.search_limit, DEFAULT_POLICY, fields)
            con.commit()
            cpu.append((time.process_time() - began_cpu) * 1000)
            wall.append((time.perf_counter() - began_wall) * 1000)
    finally:
        con.close()
    return {
        "searches": len(cpu[warm_up:]),
        "search_cpu_ms": percentiles_ms(cpu[warm_up:]),
        "search_wall_ms": percentiles_ms(wall[warm_up:]),
        "query_cpu_ms": {query: percentiles_ms(ms[warm_up:])
                         for query, ms in timed.cpu_ms.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search_profile",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--master", type=Path, required=True)
    parser.add_argument("--probes", type=int, default=60)
    parser.add_argument("--scan-children", action="store_true",
                        help="find the children's rows by scanning child_id (no engine)")
    parser.add_argument("--brief", action="store_true",
                        help="read only the fields the web results page shows")
    args = parser.parse_args(argv)
    if not args.master.is_file():
        parser.error(f"no master at {args.master}")
    print(json.dumps(profile(args.master, args.probes, scan_children=args.scan_children,
                             brief=args.brief), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
