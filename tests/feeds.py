"""Small hand-made feed folders for engine tests: write records as the national feeds would, run
the engine over them, and read back what a master holds."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from engine.config import EngineConfig
from engine.dataflow import RunOptions
from engine.feed_source import StopSignal
from engine.runner import RunSummary, run_engine
from linkage_models.scoring import DEFAULT_MODEL_PATH
from streams.generator import generate


def synthetic_feeds(folder: Path, children: int, seed: int) -> Path:
    """Generate synthetic feeds for `children` into `folder`; their feeds folder."""
    generate(children, seed, folder)
    return folder / "feeds"


def write_feed(feeds: Path, feed: str, records: list[dict], file: str = "2009-01.jsonl") -> Path:
    """Append `records` (values as given) as JSON lines to `feeds/<feed>/<file>`."""
    path = feeds / feed / file
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return path


def gro_birth(record_id: str, forenames: str, surname: str, sex: str, dob: str, postcode: str,
              **extra: str) -> dict:
    return {
        "record_id": record_id, "event": "birth", "event_time": f"{dob}T09:00:00Z",
        "registration_id": f"R{record_id}", "forenames": forenames, "surname": surname,
        "sex": sex, "date_of_birth": dob, "address_line1": "1 High Street", "town": "Leeds",
        "postcode": postcode, "mother_forenames": "Sarah", "mother_surname": surname, **extra,
    }


def nhs_record(record_id: str, nhs_number: str, given: str, family: str, gender: str, dob: str,
               postcode: str, event: str = "registration", event_time: str | None = None,
               **extra: str) -> dict:
    return {
        "record_id": record_id, "event": event, "event_time": event_time or f"{dob}T12:00:00Z",
        "nhs_number": nhs_number, "given_name": given, "family_name": family, "gender": gender,
        "birth_date": dob, "address_line1": "1 High Street", "town": "Leeds",
        "postcode": postcode, "gp_practice_code": "B86001", **extra,
    }


def dwp_claim(record_id: str, child_reference: str, forenames: str, surname: str, sex: str,
              dob: str, postcode: str, event: str = "new_claim",
              event_time: str = "2009-03-01T10:00:00Z") -> dict:
    return {
        "record_id": record_id, "event": event, "event_time": event_time,
        "claim_reference": f"CL{child_reference}", "child_reference": child_reference,
        "child_forenames": forenames, "child_surname": surname, "child_sex": sex,
        "child_date_of_birth": dob, "claimant_forenames": "Sarah", "claimant_surname": surname,
        "address_line1": "4 New Road", "town": "Manchester", "postcode": postcode,
    }


def run(feeds: Path, db: Path, *, config: EngineConfig | None = None,
        workers: int = 1) -> RunSummary:
    """Stream `feeds` into the master `db` with the shipped model, to the end of the files."""
    options = RunOptions(feeds_dir=feeds, db_path=db, model_path=DEFAULT_MODEL_PATH,
                         config=config or EngineConfig(), workers=workers)
    return run_engine(options, StopSignal())


def census_record(record_id: str, upn: str, forename: str, surname: str, sex: str, dob: str,
                  postcode: str, term: str = "2013-autumn", **extra: str) -> dict:
    year, season = term.split("-")
    month = {"spring": "01", "summer": "05", "autumn": "10"}[season]
    return {
        "record_id": record_id, "event": "census", "event_time": f"{year}-{month}-03T08:00:00Z",
        "upn": upn, "census_term": term, "school_urn": "107001", "legal_forename": forename,
        "legal_surname": surname, "dob": dob, "sex": sex, "postcode": postcode,
        "nc_year_group": "R", **extra,
    }


def master_state(db: Path) -> dict[str, list[tuple]]:
    """What a crash must not change: links, golden records, dead letters, feed positions."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            "links": con.execute(
                "SELECT feed, record_id, child_id, decision, match_probability FROM links "
                "ORDER BY ALL").fetchall(),
            "children": con.execute(
                "SELECT * EXCLUDE (created_at, updated_at, row_no) FROM children ORDER BY child_id"
            ).fetchall(),
            "dead_letters": con.execute(
                "SELECT feed, file, line, error FROM dead_letters ORDER BY ALL").fetchall(),
            "feed_positions": con.execute(
                "SELECT file, byte_offset, line FROM feed_positions ORDER BY ALL").fetchall(),
        }
    finally:
        con.close()


def count_lines(feeds: Path) -> int:
    """Lines in every feed file under `feeds`."""
    return sum(len(path.read_bytes().splitlines()) for path in feeds.glob("*/*.jsonl"))
