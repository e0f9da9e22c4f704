"""A starter model spec from the columns a snapshot of records actually carries
(`contactpoint model init`): Splink library comparisons for the person fields present,
equi-join blocking rules over pairs of them, and a training plan that leaves every
comparison free in some EM session. A starting point to train, evaluate and then tune.
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import tomli_w

from linkage_models.blocking import count_blocked_pairs
from linkage_models.records import register_model_records
from linkage_models.settings import ModelSpec, TrainingPlan, spec_from_dict

# A field is carried when at least this share of records has a value for it.
PRESENT_SHARE = 0.01
# A postcode column is compared as UK postcodes when most of its values have the UK shape.
UK_POSTCODE = r"^[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}$"
UK_POSTCODE_SHARE = 0.5

# Per canonical field, the comparison a starter spec uses (splink.comparison_library
# functions with their parameters, in waterfall order of importance).
STARTER_COMPARISONS: dict[str, dict[str, Any]] = {
    "first_name": {
        "comparison": "CustomComparison", "output_column_name": "first_name",
        "comparison_levels": [
            {"level": "NullLevel", "col_name": "first_name"},
            {"level": "ExactMatchLevel", "col_name": "first_name",
             "term_frequency_adjustments": True},
            {"level": "CustomLevel", "label_for_charts": "Same standard form (diminutive)",
             "sql_condition": "first_name_std_l = first_name_std_r"},
            {"level": "CustomLevel", "label_for_charts": "Equal to the other's surname (swapped)",
             "sql_condition": "first_name_l = surname_r OR first_name_r = surname_l"},
            {"level": "JaroWinklerLevel", "col_name": "first_name", "distance_threshold": 0.92},
            {"level": "JaroWinklerLevel", "col_name": "first_name", "distance_threshold": 0.8},
            {"level": "ElseLevel"},
        ],
    },
    "surname": {
        "comparison": "CustomComparison", "output_column_name": "surname",
        "comparison_levels": [
            {"level": "NullLevel", "col_name": "surname"},
            {"level": "ExactMatchLevel", "col_name": "surname",
             "term_frequency_adjustments": True},
            {"level": "CustomLevel", "label_for_charts": "Equal to the other's first name "
             "(swapped)", "sql_condition": "surname_l = first_name_r OR surname_r = first_name_l"},
            {"level": "JaroWinklerLevel", "col_name": "surname", "distance_threshold": 0.92},
            {"level": "JaroWinklerLevel", "col_name": "surname", "distance_threshold": 0.8},
            {"level": "ElseLevel"},
        ],
    },
    "date_of_birth": {"comparison": "DateOfBirthComparison", "col_name": "date_of_birth",
                      "input_is_string": True},
    "sex": {"comparison": "ExactMatch", "col_name": "sex"},
    "postcode": {"comparison": "DamerauLevenshteinAtThresholds", "col_name": "postcode",
                 "distance_threshold_or_thresholds": [1],
                 "term_frequency_adjustments": True},
    "address_line1": {"comparison": "JaroWinklerAtThresholds", "col_name": "address_line1",
                      "score_threshold_or_thresholds": [0.9, 0.7]},
    "address_line2": {"comparison": "JaroWinklerAtThresholds", "col_name": "address_line2",
                      "score_threshold_or_thresholds": [0.9]},
    "town": {"comparison": "JaroWinklerAtThresholds", "col_name": "town",
             "score_threshold_or_thresholds": [0.9], "term_frequency_adjustments": True},
    "nhs_number": {"comparison": "ExactMatch", "col_name": "nhs_number"},
}
UK_POSTCODE_COMPARISON: dict[str, Any] = {"comparison": "PostcodeComparison",
                                          "col_name": "postcode"}
# Blocking keys: a person field paired with another person field or a place field, and a
# household field (a street address) paired with the postcode; never two wide place fields.
# first_name_std is first_name with diminutives mapped to the formal name.
PERSON_KEYS: tuple[str, ...] = ("first_name_std", "surname", "date_of_birth")
PLACE_KEYS: tuple[str, ...] = ("postcode", "town")
HOUSEHOLD_KEYS: tuple[str, ...] = ("address_line1", "address_line2")
IDENTIFIER_KEYS: tuple[str, ...] = ("nhs_number",)
# First name and surname as a set: finds records whose names were swapped.
SWAPPED_NAMES_RULE = (
    "least(l.first_name, l.surname) = least(r.first_name, r.surname)"
    " AND greatest(l.first_name, l.surname) = greatest(r.first_name, r.surname)"
)
# EM sessions, tried in order; each frees every comparison its columns do not touch.
EM_RULE_CANDIDATES: tuple[tuple[str, ...], ...] = (
    ("first_name", "surname"),
    ("date_of_birth", "postcode"),
    ("date_of_birth", "town"),
    ("date_of_birth",),
    ("postcode",),
    ("surname",),
)
DETERMINISTIC_FIELDS: tuple[str, ...] = ("first_name", "surname", "date_of_birth")


def starter_spec(records: pa.Table, name: str = "model") -> ModelSpec:
    """A checked spec for canonical `records`: comparisons and rules over the fields they
    carry (raises SpecError when they carry too few to link on)."""
    carried = carried_fields(records)
    comparisons = [
        UK_POSTCODE_COMPARISON if field == "postcode" and _uk_postcodes(records)
        else STARTER_COMPARISONS[field]
        for field in STARTER_COMPARISONS if field in carried
    ]
    blocking = [_rule((key,)) for key in IDENTIFIER_KEYS if key in carried]
    if "source_key" in carried:
        blocking.append("l.feed = r.feed AND l.source_key = r.source_key")
    blocking += _pair_rules(carried)
    plan = TrainingPlan(
        em_blocking_rules=_em_rules(records, carried, TrainingPlan.em_min_pairs),
        deterministic_rules=(
            *(_rule((key,)) for key in IDENTIFIER_KEYS if key in carried),
            _rule(tuple(f for f in DETERMINISTIC_FIELDS if f in carried)),
        ),
    )
    document = ModelSpec(name, tuple(comparisons), tuple(blocking), plan).to_dict()
    return spec_from_dict(document)


def write_spec(spec: ModelSpec, out: Path, header: str = "") -> None:
    """Write `spec` as TOML (`.toml`, with `header` as comment lines) or JSON."""
    document = spec.to_dict()
    if out.suffix == ".toml":
        comment = "".join(f"# {line}\n" for line in header.splitlines())
        text = comment + tomli_w.dumps(document, multiline_strings=False, indent=2)
    else:
        text = json.dumps(document, indent=2) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")


def carried_fields(records: pa.Table) -> set[str]:
    """The columns of `records` with a value in at least PRESENT_SHARE of the records."""
    if records.num_rows == 0:
        return set()
    counts = duckdb.sql(
        "SELECT " + ", ".join(f'count("{c}")' for c in records.column_names) + " FROM records"
    ).fetchall()[0]
    return {
        column for column, count in zip(records.column_names, counts, strict=True)
        if count >= PRESENT_SHARE * records.num_rows
    }


def _uk_postcodes(records: pa.Table) -> bool:
    """Most postcodes have the UK shape (`SW1A 1AA`)."""
    share = duckdb.sql(
        f"SELECT avg(CAST(regexp_matches(postcode, '{UK_POSTCODE}') AS INT)) FROM records "
        "WHERE postcode IS NOT NULL"
    ).fetchall()[0][0]
    return (share or 0) >= UK_POSTCODE_SHARE


def _pair_rules(carried: set[str]) -> list[str]:
    """Person field with person field, person field with place field, household field with
    postcode, and the swapped-names key."""
    person = [key for key in PERSON_KEYS if key in carried]
    place = [key for key in PLACE_KEYS if key in carried]
    household = [key for key in HOUSEHOLD_KEYS if key in carried and "postcode" in carried]
    swapped = [SWAPPED_NAMES_RULE] if {"first_name", "surname"} <= carried else []
    return [
        *(_rule(pair) for pair in combinations(person, 2)),
        *(_rule((p, q)) for p in person for q in place),
        *(_rule((h, "postcode")) for h in household),
        *swapped,
    ]


def _em_rules(records: pa.Table, carried: set[str], min_pairs: int) -> tuple[str, ...]:
    """EM sessions from EM_RULE_CANDIDATES, each finding at least `min_pairs` pairs in
    `records`, until every carried compared field is free in one (a field is free in a
    session whose rule does not use it)."""
    left = {field for field in STARTER_COMPARISONS if field in carried}
    rules: list[str] = []
    with duckdb.connect() as con:
        table = register_model_records(con, records, "starter_records")
        for columns in EM_RULE_CANDIDATES:
            if not left:
                break
            if not (set(columns) <= carried and left - set(columns)):
                continue
            if count_blocked_pairs(con, table, [_rule(columns)]) >= min_pairs:
                rules.append(_rule(columns))
                left &= set(columns)
    return tuple(rules)


def _rule(columns: tuple[str, ...]) -> str:
    return " AND ".join(f"l.{column} = r.{column}" for column in columns)
