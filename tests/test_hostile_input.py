"""Bad input never stops the stream: every bad line is a dead letter, every good line is linked."""

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.adapters import parse_line
from streams.canonical import BadRecord
from tests.feeds import dwp_claim, gro_birth, nhs_record, run, write_feed
from tests.test_engine_scenarios import query

HOSTILE_TEXT = st.one_of(
    st.text(max_size=200),
    st.sampled_from([
        "'; DROP TABLE children; --", "%_%", "\x00\x01\x1b[2J", "🧒🏽" * 50, "A" * 100_000,
        "Robert'); DELETE FROM links; --", "\u202eevil", "null", "[]", "{}", "{\"record_id\": 1}",
    ]),
)
HOSTILE_VALUE = st.one_of(st.none(), HOSTILE_TEXT, st.integers(), st.lists(st.text(max_size=5)))
HOSTILE_RECORD = st.dictionaries(
    st.sampled_from(["record_id", "event", "event_time", "forenames", "surname", "sex",
                     "date_of_birth", "postcode", "nhs_number", "registration_id", "extra"]),
    HOSTILE_VALUE, max_size=8,
)
HOSTILE_LINE = st.one_of(HOSTILE_TEXT.filter(lambda s: "\n" not in s and "\r" not in s),
                         HOSTILE_RECORD.map(json.dumps))


def is_good(feed: str, line: str) -> bool:
    try:
        parse_line(feed, line)
    except BadRecord:
        return False
    return True


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(lines=st.lists(HOSTILE_LINE, min_size=1, max_size=15))
def test_random_hostile_lines_all_reach_dead_letters_and_good_lines_still_link(
    lines: list[str], tmp_path_factory
):
    tmp = tmp_path_factory.mktemp("hostile")
    feeds, db = tmp / "feeds", tmp / "master.duckdb"
    good = [gro_birth("g1", "Ava", "Brown", "F", "2009-03-01", "LS6 2AB")]
    path = write_feed(feeds, "gro", good)
    with path.open("a", encoding="utf-8", errors="surrogatepass") as handle:
        for line in lines:
            handle.write(line + "\n")
    expected_bad = sum(not is_good("gro", line) for line in lines)

    summary = run(feeds, db)

    assert summary.dead_letters == expected_bad
    assert summary.updates == 1 + len(lines) - expected_bad - _duplicates(lines)
    assert query(db, "SELECT count(*) FROM links WHERE feed = 'gro' AND record_id = 'g1'") == [(1,)]


def _duplicates(lines: list[str]) -> int:
    """Good lines whose record_id repeats an earlier one (or g1) are applied once."""
    seen = {"g1"}
    duplicates = 0
    for line in lines:
        if is_good("gro", line):
            record_id = parse_line("gro", line).record_id
            duplicates += record_id in seen
            seen.add(record_id)
    return duplicates


def test_empty_files_and_a_truncated_last_line(tmp_path: Path):
    feeds, db = tmp_path / "feeds", tmp_path / "master.duckdb"
    (feeds / "nhs").mkdir(parents=True)
    (feeds / "nhs" / "2009-01.jsonl").write_text("")
    path = write_feed(feeds, "gro", [gro_birth("1", "Ava", "Brown", "F", "2009-03-01", "LS6 2AB")])
    with path.open("a") as handle:
        handle.write('{"record_id": "2", "event": "bir')
    summary = run(feeds, db)
    assert (summary.updates, summary.dead_letters) == (1, 1)
    ((line, error),) = query(db, "SELECT line, error FROM dead_letters")
    assert line == 2 and error.startswith("invalid JSON")


def test_the_same_record_delivered_twice_is_applied_once(tmp_path: Path):
    feeds, db = tmp_path / "feeds", tmp_path / "master.duckdb"
    birth = gro_birth("1", "Ava", "Brown", "F", "2009-03-01", "LS6 2AB")
    write_feed(feeds, "gro", [birth, birth])
    write_feed(feeds, "gro", [birth], "2009-02.jsonl")
    summary = run(feeds, db)
    assert summary.updates == 1
    assert query(db, "SELECT count(*) FROM links") == [(1,)]
    assert query(db, "SELECT count(*) FROM records") == [(1,)]


def test_an_older_update_arriving_late_never_overwrites_newer_values(tmp_path: Path):
    feeds, db = tmp_path / "feeds", tmp_path / "master.duckdb"
    write_feed(feeds, "dwp", [dwp_claim("d2", "CH1", "Leo", "Brown", "M", "2007-01-11", "M1 4BT",
                                        event="change_of_address",
                                        event_time="2010-06-01T10:00:00Z")])
    run(feeds, db)
    write_feed(feeds, "dwp", [dwp_claim("d1", "CH1", "Leo", "Brown", "M", "2007-01-11", "LS6 2AB",
                                        event_time="2009-03-01T10:00:00Z")], "2009-03.jsonl")
    run(feeds, db)
    assert query(db, "SELECT count(*), any_value(postcode) FROM children") == [(1, "M1 4BT")]
    provenance = query(db, "SELECT provenance->>'postcode' FROM children")[0][0]
    assert provenance == "dwp:d2"


def test_of_two_updates_at_one_moment_the_greater_record_id_wins_in_either_order(tmp_path: Path):
    # the fold compares order keys as text; "dwp:d1" is a prefix of "dwp:d12" and sorts first
    moment = "2010-06-01T10:00:00Z"
    lines = [dwp_claim("d1", "CH1", "Leo", "Brown", "M", "2007-01-11", "LS6 2AB",
                       event="change_of_address", event_time=moment),
             dwp_claim("d12", "CH1", "Leo", "Brown", "M", "2007-01-11", "M1 4BT",
                       event="change_of_address", event_time=moment)]
    for order, lines_in_order in (("ab", lines), ("ba", lines[::-1])):
        feeds, db = tmp_path / order / "feeds", tmp_path / order / "master.duckdb"
        for line, period in zip(lines_in_order, ("2010-06", "2010-07"), strict=True):
            write_feed(feeds, "dwp", [line], f"{period}.jsonl")
            run(feeds, db)
        assert query(db, "SELECT postcode, provenance->>'postcode' FROM children") == [
            ("M1 4BT", "dwp:d12")], order


def test_each_golden_field_records_where_it_came_from(tmp_path: Path):
    feeds, db = tmp_path / "feeds", tmp_path / "master.duckdb"
    write_feed(feeds, "gro", [gro_birth("1", "Oliver", "Smith", "M", "2009-01-05", "LS6 2AB")])
    write_feed(feeds, "nhs", [nhs_record("n1", "9434765919", "Ollie", "Smith", "1", "2009-01-05",
                                         "LS6 2AB", event_time="2009-02-01T00:00:00Z")])
    run(feeds, db)
    row = query(db, "SELECT first_name, nhs_number, gp_practice_code, provenance FROM children")
    first_name, nhs_number, gp, provenance_json = row[0]
    provenance = json.loads(provenance_json)
    assert (first_name, nhs_number, gp) == ("OLIVER", "9434765919", "B86001")
    assert provenance["first_name"] == "gro:1"
    assert provenance["gp_practice_code"] == "nhs:n1"
