"""A connection that parses each statement's text once.

DuckDB parses a statement's text at every `execute`, and a batch's statements are mostly the same
texts every batch: the scores' alone is 13 kB of SQL, 2.8 ms to parse, and a following batch at
1M children spends ~9 ms parsing its ~75 statements (docs/scale.md, "Midday, 2026-12-05").
`execute` given a parsed statement (`duckdb.Statement`) skips the parse and still binds and plans
it against the tables as they are then, so the batch's temporary tables may be replaced between
two runs of it. A text that varies (numbers written into it) is parsed as before, and only
displaces texts that have not run for a while from the cache.

A parsed statement takes far more memory than its text (the scores' ~230 kB), so the cache holds
a batch's texts and little more, and none longer than `LONGEST_PARSED` (a bulk load's batches
write long lists of numbers into some texts, which never come again).
"""

from __future__ import annotations

import functools
from typing import Any

import duckdb

# Texts kept parsed: a batch runs ~75 statements, ~20 of them with text of its own.
PARSED_TEXTS = 128
LONGEST_PARSED = 32_768  # characters


class ParsedStatements:
    """`con` whose `execute` runs a one-statement text parsed once (see the module docstring);
    everything else is `con`'s."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)

    def execute(self, sql: str | duckdb.Statement, parameters: object = None) -> Any:
        statement = parsed(sql) if isinstance(sql, str) and len(sql) <= LONGEST_PARSED else sql
        if parameters is None:
            return self._con.execute(statement)
        return self._con.execute(statement, parameters)


@functools.lru_cache(maxsize=PARSED_TEXTS)
def parsed(sql: str) -> duckdb.Statement | str:
    """`sql` parsed, if it is one statement (else the text, run as it is)."""
    statements = duckdb.extract_statements(sql)
    return statements[0] if len(statements) == 1 else sql
