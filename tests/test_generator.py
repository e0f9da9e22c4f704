"""Synthetic England: determinism, truth, the feed contract, errors at their rates, twins."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import pytest

from streams.adapters import parse_line
from streams.canonical import EVENTS, FEEDS, BadRecord
from streams.generator import (
    BAD_KINDS,
    TRUTH_HEADER,
    FeedErrorRates,
    GenerateSummary,
    GeneratorConfig,
    generate,
)
from streams.generator.identifiers import NhsNumbers, nhs_check_digit, upn
from streams.generator.places import Geography
from streams.names import DIMINUTIVES, standard_first_name

CHILDREN = 600
FIELDS: dict[str, set[str]] = {
    "gro": {"registration_id", "forenames", "surname", "sex", "date_of_birth", "date_of_death",
            "place_of_birth", "mother_forenames", "mother_surname", "mother_maiden_surname",
            "father_forenames", "father_surname", "address_line1", "address_line2", "town",
            "postcode", "nhs_number"},
    "dwp": {"claim_reference", "child_reference", "child_forenames", "child_surname",
            "child_sex", "child_date_of_birth", "claimant_forenames", "claimant_surname",
            "claimant_nino", "address_line1", "address_line2", "town", "postcode"},
    "nhs": {"nhs_number", "given_name", "other_given_names", "family_name", "gender",
            "birth_date", "death_date", "address_line1", "address_line2", "town", "postcode",
            "gp_practice_code"},
    "census": {"upn", "census_term", "school_urn", "legal_forename", "legal_surname",
               "preferred_forename", "preferred_surname", "former_surname", "dob", "sex",
               "postcode", "nc_year_group"},
}
DATE_FIELDS = {"date_of_birth", "date_of_death", "child_date_of_birth", "birth_date",
               "death_date", "dob"}
EVENT_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
UK_POSTCODE = re.compile(r"[A-Z]{1,2}[0-9]{1,2} [0-9][A-Z]{2}")


def feed_lines(out: Path) -> list[tuple[str, str, int, str]]:
    """(feed, file relative to feeds/, line number, text) of every line written, in file order."""
    lines = []
    for feed in FEEDS:
        for path in sorted((out / "feeds" / feed).glob("*.jsonl")):
            relative = f"{feed}/{path.name}"
            text = path.read_text(encoding="utf-8")
            assert text.endswith("\n")
            for number, line in enumerate(text.split("\n")[:-1], start=1):
                lines.append((feed, relative, number, line))
    return lines


def read_truth(out: Path) -> list[dict[str, str]]:
    with (out / "truth.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def contract_violation(feed: str, line: str) -> str | None:
    """Why a line breaks the feed contract of DESIGN.md (plain json), or None if it is good."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return "invalid json"
    if not isinstance(record, dict):
        return "not an object"
    if not record.get("record_id"):
        return "no record_id"
    if record.get("event") not in EVENTS[feed]:
        return "unknown event"
    if any(value is not None and not isinstance(value, str) for value in record.values()):
        return "wrong type"
    for name in DATE_FIELDS & record.keys():
        if record[name] is not None:
            try:
                dt.date.fromisoformat(record[name])
            except ValueError:
                return "impossible date"
    return None


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerateSummary]:
    out = tmp_path_factory.mktemp("england")
    return out, generate(CHILDREN, seed=7, out=out)


@pytest.fixture(scope="module")
def lines(run: tuple[Path, GenerateSummary]) -> list[tuple[str, str, int, str]]:
    return feed_lines(run[0])


@pytest.fixture(scope="module")
def truth(run: tuple[Path, GenerateSummary]) -> list[dict[str, str]]:
    return read_truth(run[0])


def all_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_same_seed_writes_byte_identical_files(run, tmp_path: Path) -> None:
    out, _ = run
    generate(CHILDREN, seed=7, out=tmp_path)
    assert all_bytes(tmp_path) == all_bytes(out)


def test_another_seed_writes_other_feeds(run, tmp_path: Path) -> None:
    generate(CHILDREN, seed=8, out=tmp_path)
    assert all_bytes(tmp_path)["truth.csv"] != all_bytes(run[0])["truth.csv"]


def test_rerun_into_the_same_folder_replaces_the_old_files(tmp_path: Path) -> None:
    generate(200, seed=1, out=tmp_path)
    first = all_bytes(tmp_path)
    generate(300, seed=2, out=tmp_path)
    generate(200, seed=1, out=tmp_path)
    assert all_bytes(tmp_path) == first


def test_all_four_feeds_have_monthly_files_over_two_years(run) -> None:
    out, summary = run
    census_files = sorted(p.name for p in (out / "feeds" / "census").glob("*.jsonl"))
    assert census_files[0] == "2009-01.jsonl"
    assert census_files[-1].startswith("2010-")
    assert all(summary.records[feed] > 0 for feed in FEEDS)


def test_truth_lists_every_line_once_with_its_bad_kind(run, lines, truth) -> None:
    out, summary = run
    assert (out / "truth.csv").read_text().startswith(TRUTH_HEADER)
    expected = []
    for feed, relative, number, text in lines:
        try:
            record = json.loads(text)
            record_id = record.get("record_id") if isinstance(record, dict) else None
        except json.JSONDecodeError:
            record_id = None
        if not isinstance(record_id, str) or not record_id:
            record_id = f"@{relative}:{number}"
        expected.append((feed, record_id))
    assert Counter((row["feed"], row["record_id"]) for row in truth) == Counter(expected)
    assert len(truth) == len(lines) == summary.total_records
    assert all(row["person_id"] or row["record_id"].startswith("@") for row in truth)


def test_record_ids_are_unique_within_each_feed(truth) -> None:
    keys = [(row["feed"], row["record_id"]) for row in truth]
    assert len(keys) == len(set(keys))


def test_every_line_keeps_the_contract_except_the_injected_bad_ones(lines, truth) -> None:
    bad_kind = {(row["feed"], row["record_id"]): row["bad_kind"] for row in truth}
    for feed, relative, number, text in lines:
        violation = contract_violation(feed, text)
        kind = bad_kind.get((feed, _record_id(text))) or bad_kind.get(
            (feed, f"@{relative}:{number}"), "")
        assert (violation is None) == (kind == ""), (relative, number, text, kind)
        if violation is None:
            record = json.loads(text)
            assert set(record) - {"record_id", "event_time", "event"} <= FIELDS[feed]
            assert EVENT_TIME.fullmatch(record["event_time"])


def test_the_adapters_accept_every_good_line_and_reject_every_bad_one(lines) -> None:
    for feed, _, _, text in lines:
        violation = contract_violation(feed, text)
        if violation is None:
            parse_line(feed, text)
        else:
            with pytest.raises(BadRecord):
                parse_line(feed, text)


def test_events_are_in_time_order_in_files_named_by_their_month(lines) -> None:
    last_time: dict[str, str] = {}
    for _, relative, _, text in lines:
        try:
            record = json.loads(text)
            event_time = record["event_time"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a truncated bad line
        assert event_time >= last_time.get(relative, "")
        assert relative.endswith(f"/{event_time[:7]}.jsonl")
        last_time[relative] = event_time


def test_snapshot_is_a_bulk_load_dated_at_the_start(run, lines, truth) -> None:
    out, summary = run
    snapshot_people = defaultdict(set)
    person = {(row["feed"], row["record_id"]): row["person_id"] for row in truth}
    for feed, _, _, text in lines:
        if contract_violation(feed, text) is None:
            record = json.loads(text)
            if record["event_time"] == "2009-01-01T00:00:00Z":
                snapshot_people[feed].add(person[(feed, record["record_id"])])
    assert len(snapshot_people["nhs"]) >= summary.children * 0.99
    assert len(snapshot_people["dwp"]) >= summary.children * 0.9
    assert 0.6 * summary.children < len(snapshot_people["census"]) < 0.85 * summary.children
    assert 0 < len(snapshot_people["gro"]) < 0.1 * summary.children


def test_every_bad_kind_is_injected_at_the_configured_rate(tmp_path: Path) -> None:
    config = GeneratorConfig(bad_line_rate=0.05)
    summary = generate(300, seed=3, out=tmp_path, config=config)
    bad = sum(summary.bad_lines.values())
    expected = config.bad_line_rate * summary.total_records
    assert abs(bad - expected) < 4 * math.sqrt(expected)
    assert set(summary.bad_lines) == set(BAD_KINDS)
    for row in read_truth(tmp_path):
        if row["record_id"].startswith("@"):
            assert row["bad_kind"] in {"invalid_json", "missing_record_id"}


@pytest.mark.parametrize("feed", FEEDS)
def test_error_counts_match_the_configured_rates(run, feed: str) -> None:
    _, summary = run
    rates = GeneratorConfig().errors[feed]
    for kind in ("unknown_sex", "case_noise", "whitespace_noise", "missing_field",
                 "postcode_typo"):
        expected = rates.rate(kind) * summary.records[feed]
        observed = summary.errors[feed].get(kind, 0)
        assert abs(observed - expected) <= 4 * math.sqrt(expected) + 2, (kind, observed, expected)


def test_error_counts_are_what_the_files_show(tmp_path: Path) -> None:
    """With no bad lines, the NHS lines with an unknown gender are exactly the counted ones."""
    nhs = FeedErrorRates(unknown_sex=0.2, dob_transposed=0.3)
    config = GeneratorConfig(bad_line_rate=0.0, errors={**GeneratorConfig().errors, "nhs": nhs})
    summary = generate(300, seed=4, out=tmp_path, config=config)
    records = [json.loads(text) for feed, _, _, text in feed_lines(tmp_path) if feed == "nhs"]
    assert sum(r["gender"] in ("0", "9") for r in records) == summary.errors["nhs"]["unknown_sex"]
    assert abs(summary.errors["nhs"]["unknown_sex"] / len(records) - 0.2) < 0.05
    assert summary.errors["nhs"]["dob_transposed"] > 0


def test_clean_feeds_when_every_rate_is_zero(tmp_path: Path) -> None:
    config = GeneratorConfig(bad_line_rate=0.0,
                             errors={feed: FeedErrorRates() for feed in FEEDS})
    generate(300, seed=5, out=tmp_path, config=config)
    for feed, _, _, text in feed_lines(tmp_path):
        record = json.loads(text)
        if record.get("postcode") is not None:
            assert UK_POSTCODE.fullmatch(record["postcode"]), record
        if feed == "nhs":
            assert record["gender"] in ("1", "2")
            assert int(record["nhs_number"][-1]) == nhs_check_digit(record["nhs_number"][:9])


def test_twins_share_birth_date_surname_and_address_but_not_first_name(tmp_path: Path) -> None:
    config = GeneratorConfig(bad_line_rate=0.0,
                             errors={feed: FeedErrorRates() for feed in FEEDS})
    summary = generate(1500, seed=6, out=tmp_path, config=config)
    assert summary.twin_sets > 0
    person = {row["record_id"]: row["person_id"] for row in read_truth(tmp_path)
              if row["feed"] == "nhs"}
    groups: dict[tuple[str, str, str], dict[str, str]] = defaultdict(dict)
    for feed, _, _, text in feed_lines(tmp_path):
        record = json.loads(text)
        if feed == "nhs" and record["event"] == "registration":
            key = (record["birth_date"], record["family_name"], record["address_line1"])
            groups[key][person[record["record_id"]]] = record["given_name"]
    multiples = [names for names in groups.values() if len(names) > 1]
    assert len(multiples) >= 0.9 * (summary.twin_sets + summary.triplet_sets)
    assert all(len(set(names.values())) == len(names) for names in multiples)
    listed = (tmp_path / "multiple_births.csv").read_text().splitlines()
    assert listed[0] == "person_id,set_id"
    assert len({row.split(",")[1] for row in listed[1:]}) >= summary.twin_sets


def test_unrelated_children_share_first_name_and_surname(truth, lines) -> None:
    person = {(row["feed"], row["record_id"]): row["person_id"] for row in truth}
    people_by_name = defaultdict(set)
    for feed, _, _, text in lines:
        if feed == "nhs" and contract_violation(feed, text) is None:
            record = json.loads(text)
            name = (record["given_name"], record["family_name"])
            people_by_name[name].add(person[("nhs", record["record_id"])])
    assert any(len(people) > 1 for people in people_by_name.values())


def test_progress_is_reported_until_done(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    generate(200, seed=1, out=tmp_path, progress=lambda done, total: calls.append((done, total)))
    assert len(calls) > 10
    assert calls[-1][0] == calls[-1][1]
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_config_from_toml_overrides_defaults_and_rejects_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "generator.toml"
    path.write_text('years = 1\nstart_date = 2010-03-01\nbad_line_rate = 0.01\n'
                    '[errors.dwp]\ntypo_keyboard = 0.2\n')
    config = GeneratorConfig.from_toml(path)
    assert (config.years, config.start_date, config.bad_line_rate) == (1, dt.date(2010, 3, 1), 0.01)
    assert config.errors["dwp"] == replace(GeneratorConfig().errors["dwp"], typo_keyboard=0.2)
    assert config.errors["gro"] == GeneratorConfig().errors["gro"]
    path.write_text("birth_rate = 0.5\n")
    with pytest.raises(ValueError, match="birth_rate"):
        GeneratorConfig.from_toml(path)
    path.write_text("[errors.nhs]\nsmudge = 0.5\n")
    with pytest.raises(ValueError, match="smudge"):
        GeneratorConfig.from_toml(path)


def test_a_shorter_period_from_another_start(tmp_path: Path) -> None:
    config = GeneratorConfig(years=1, start_date=dt.date(2010, 3, 15))
    generate(200, seed=1, out=tmp_path, config=config)
    names = sorted(p.name for p in (tmp_path / "feeds" / "nhs").glob("*.jsonl"))
    assert names[0] == "2010-03.jsonl"
    assert names[-1] <= "2011-03.jsonl"


def test_nhs_numbers_are_distinct_with_valid_check_digits() -> None:
    issuer = NhsNumbers()
    numbers = [issuer.issue() for _ in range(5000)]
    assert len(set(numbers)) == len(numbers)
    assert all(len(n) == 10 and int(n[9]) == nhs_check_digit(n[:9]) for n in numbers)
    assert nhs_check_digit("943476591") == 9  # the NHS Data Dictionary's example 943 476 5919


def test_upns_are_a_letter_and_twelve_digits() -> None:
    assert re.fullmatch(r"[A-Z]\d{12}", upn("383", 1234))


def test_towns_share_postcodes_between_households() -> None:
    geography = Geography(children=1000)
    leeds = next(t for t in geography.towns if t.name == "Leeds")
    same_unit = [geography.address(leeds.index, 3, house) for house in (1, 2)]
    assert same_unit[0].postcode == same_unit[1].postcode
    assert same_unit[0].line1 != same_unit[1].line1
    assert UK_POSTCODE.fullmatch(same_unit[0].postcode)
    assert re.fullmatch(r"[A-Z]\d{5}", leeds.practices[0])
    assert re.fullmatch(r"\d{6}", leeds.primaries[0])


def test_diminutives_map_back_to_their_formal_name() -> None:
    assert standard_first_name("ALFIE") == "ALFRED"
    assert standard_first_name("BELLA") == "ISABELLA"
    assert standard_first_name("OLIVER") == "OLIVER"
    assert standard_first_name(None) is None
    assert all(name.isupper() and all(f.isupper() for f in forms)
               for name, forms in DIMINUTIVES.items())


def _record_id(text: str) -> str | None:
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return None
    return record.get("record_id") if isinstance(record, dict) else None
