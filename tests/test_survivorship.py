"""The golden fold gives the same rows in DuckDB and in Python (engine.survivorship.fold_few):
a batch of a few records is folded in Python, a large one in DuckDB, and a child must not
depend on which (docs/scale.md)."""

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import SurvivorshipConfig
from engine.master_store import GOLDEN_FIELDS, open_master
from engine.survivorship import GoldenFold, decoded_keys, decoded_keys_sql, encoded_keys
from streams.canonical import UPDATE_COLUMNS

_FEEDS = ("gro", "dwp", "nhs", "census", "police")  # police: a feed without a rank
_CHILDREN = ("c1", "c2", "c3")
# values with what could trip a fold: quotes, backslashes, non-ASCII, the separator itself
_values = st.one_of(st.none(), st.sampled_from(["", "A", "B", "Ö", 'O"NEIL', "a\\b", "x\x01y",
                                                "ZZ", "名"]))
_times = st.one_of(st.none(), st.sampled_from(["2009-01-01T00:00:00Z", "2009-06-01T00:00:00Z",
                                               "2010-01-01T00:00:00Z"]))
_record = st.fixed_dictionaries({
    "child_id": st.sampled_from(_CHILDREN),
    "feed": st.sampled_from(_FEEDS),
    "record_id": st.sampled_from(["1", "2", "3", 'q"4']),
    "event_time": _times,
    "event": st.sampled_from([None, "birth", "death", "census"]),
    "date_of_death": st.one_of(st.none(), st.just("2010-02-02")),
    "values": st.lists(_values, min_size=len(GOLDEN_FIELDS), max_size=len(GOLDEN_FIELDS)),
})
_current = st.fixed_dictionaries({
    "status": st.sampled_from(["active", "deceased", "archived"]),
    "values": st.lists(_values, min_size=len(GOLDEN_FIELDS), max_size=len(GOLDEN_FIELDS)),
    "sources": st.lists(st.one_of(st.none(), st.sampled_from(["gro:9", "", 'nhs:"x"'])),
                        min_size=len(GOLDEN_FIELDS), max_size=len(GOLDEN_FIELDS)),
    "keys": st.lists(st.one_of(st.none(), st.sampled_from(["2009-03-01T00:00:00Z3",
                                                          "42009-01-01T00:00:00Z", "0"])),
                     min_size=len(GOLDEN_FIELDS), max_size=len(GOLDEN_FIELDS)),
})


@pytest.fixture(scope="module")
def master(tmp_path_factory) -> duckdb.DuckDBPyConnection:
    con = open_master(tmp_path_factory.mktemp("fold") / "master.duckdb")
    con.execute("CREATE OR REPLACE TEMP TABLE rebuilt (child_id VARCHAR)")
    yield con
    con.close()


def _load(con: duckdb.DuckDBPyConnection, records: list[dict], current: dict[str, dict],
          rebuilt: list[str]) -> None:
    con.execute("DELETE FROM children")
    for child_id, row in current.items():
        con.execute(f"""
            INSERT INTO children (child_id, {", ".join(GOLDEN_FIELDS)}, provenance,
                                  survivorship_keys, status, created_at, updated_at)
            VALUES (?, {", ".join("?" for _ in GOLDEN_FIELDS)}, to_json(map_from_entries(?)),
                    ?, ?, now(), now())
        """, [child_id, *row["values"],
              [{"key": n, "value": s} for n, s in zip(GOLDEN_FIELDS, row["sources"],
                                                      strict=True)],
              encoded_keys(row["keys"]), row["status"]])
    columns = ", ".join(f"{c} VARCHAR" for c in UPDATE_COLUMNS if c not in GOLDEN_FIELDS)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE placed (
        child_id VARCHAR, unique_id VARCHAR, {columns}, {", ".join(
            f"{name} VARCHAR" for name in GOLDEN_FIELDS)})""")
    for record in records:
        fields = dict(zip(GOLDEN_FIELDS, record["values"], strict=True))
        fields["date_of_death"] = record["date_of_death"] or fields["date_of_death"]
        row = {"child_id": record["child_id"], "feed": record["feed"],
               "record_id": record["record_id"],
               "unique_id": f"{record['feed']}:{record['record_id']}",
               "event_time": record["event_time"], "event": record["event"], **fields}
        con.execute(f"INSERT INTO placed BY NAME SELECT {', '.join('? AS ' + k for k in row)}",
                    list(row.values()))
    con.execute("DELETE FROM rebuilt")
    for child_id in rebuilt:
        con.execute("INSERT INTO rebuilt VALUES (?)", [child_id])


def _children(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(f"""
        SELECT child_id, {", ".join(GOLDEN_FIELDS)}, provenance::VARCHAR,
               survivorship_keys::VARCHAR, status
        FROM children ORDER BY child_id""").fetchall()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(_record, min_size=1, max_size=6, unique_by=lambda r: (
           r["feed"], r["record_id"])),
       current=st.dictionaries(st.sampled_from(_CHILDREN), _current, max_size=3),
       rebuilt=st.lists(st.sampled_from(_CHILDREN), max_size=2, unique=True),
       trust=st.fixed_dictionaries({"gro": st.integers(0, 12), "nhs": st.integers(0, 12)}))
def test_the_fold_in_python_gives_the_rows_duckdb_gives(master, records, current, rebuilt,
                                                       trust):
    config = SurvivorshipConfig(source_trust={**SurvivorshipConfig().source_trust, **trust})
    rows = {}
    for records_said, way in ((10**9, "duckdb"), (0, "python")):
        _load(master, records, current, rebuilt)
        GoldenFold(config, "placed", "rebuilt" if rebuilt else None).run(master, records_said)
        rows[way] = _children(master)
    assert rows["python"] == rows["duckdb"]


_keys = st.lists(st.one_of(st.none(), st.sampled_from(["42009-01-01T00:00:00Z", "0", "1", "",
                                                      "2009-06-01T00:00:00Z4", 'a"b', "Ö"])),
                 min_size=len(GOLDEN_FIELDS), max_size=len(GOLDEN_FIELDS))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=_keys)
def test_stored_keys_read_back_as_written_in_python_and_in_duckdb(master, keys):
    """`survivorship_keys` holds each field's key once per child; reading it back, in Python or
    in the fold's SQL, gives every field its own key again."""
    stored = encoded_keys(keys)
    assert decoded_keys(stored) == keys
    assert master.execute(f"SELECT {decoded_keys_sql('k')} FROM (SELECT from_json(?::JSON, "
                          "'[\"VARCHAR\"]') AS k)", [stored]).fetchone()[0] == keys
