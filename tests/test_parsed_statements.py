"""A connection that parses each statement's text once (engine.parsed_statements)."""

import duckdb
import pytest

from engine.parsed_statements import LONGEST_PARSED, ParsedStatements, parsed


def test_a_text_run_again_is_parsed_once_and_bound_to_the_tables_as_they_are_then():
    con = ParsedStatements(duckdb.connect())
    text = "SELECT count(*), sum(x) FROM batch_rows WHERE x > $least"
    con.execute("CREATE TEMP TABLE batch_rows AS SELECT range AS x FROM range(5)")
    assert con.execute(text, {"least": 1}).fetchall() == [(3, 9)]
    con.execute("DROP TABLE batch_rows")
    con.execute("CREATE TEMP TABLE batch_rows AS SELECT range * 10 AS x FROM range(3)")
    misses, hits = parsed.cache_info().misses, parsed.cache_info().hits
    assert con.execute(text, {"least": 1}).fetchall() == [(2, 30)]
    assert (parsed.cache_info().misses, parsed.cache_info().hits) == (misses, hits + 1)


def test_several_statements_in_one_text_all_run_and_the_rest_passes_through():
    con = ParsedStatements(duckdb.connect())
    con.execute("CREATE TABLE a (x INT); INSERT INTO a VALUES (1), (2)")
    assert con.execute("SELECT sum(x) FROM a").fetchall() == [(3,)]
    con.begin()
    con.execute("INSERT INTO a VALUES (?)", [4])
    con.rollback()
    assert con.execute("SELECT sum(x) FROM a").fetchall() == [(3,)]


def test_a_text_that_does_not_parse_raises_as_duckdb_would():
    with pytest.raises(duckdb.ParserException):
        ParsedStatements(duckdb.connect()).execute("SELEC 1")


def test_a_long_text_runs_unparsed_and_is_not_kept():
    con = ParsedStatements(duckdb.connect())
    numbers = ",".join(str(n) for n in range(LONGEST_PARSED // 4))
    text = f"SELECT count(*) FROM unnest(string_split('{numbers}', ','))"
    assert len(text) > LONGEST_PARSED
    misses = parsed.cache_info().misses
    assert con.execute(text).fetchall() == [(LONGEST_PARSED // 4,)]
    assert parsed.cache_info().misses == misses
