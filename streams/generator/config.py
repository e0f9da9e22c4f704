"""Every rate of the synthetic population and its feeds, with documented defaults in one place."""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ERROR_KINDS: tuple[str, ...] = (
    "typo_keyboard",
    "typo_ocr",
    "nickname",
    "surname_part",
    "name_swap",
    "dob_typo",
    "dob_transposed",
    "missing_field",
    "stale_address",
    "postcode_typo",
    "unknown_sex",
    "case_noise",
    "whitespace_noise",
    "nhs_number_typo",
)

BAD_KINDS: tuple[str, ...] = (
    "invalid_json",
    "missing_record_id",
    "impossible_date",
    "wrong_type",
    "unknown_event",
)


@dataclass(frozen=True)
class FeedErrorRates:
    """Probability that one record of a feed carries each kind of error (independent per kind).

    A rate is conditional on the error being possible: `surname_part` is the share of records of
    children with a two-part surname that show one part; `nickname` of those whose first name has
    a diminutive; `name_swap` of those with a middle name; `stale_address` of those whose household
    has a previous address; `nhs_number_typo` of those that carry an NHS number.
    """

    typo_keyboard: float = 0.0  # adjacent-key slip, dropped, doubled or swapped letter in a name
    typo_ocr: float = 0.0  # OCR confusion in a name (rn/m, cl/d, I/L, O/Q, ...)
    nickname: float = 0.0  # first forename replaced by a diminutive (Alfred -> Alfie)
    surname_part: float = 0.0  # one part of a hyphenated or double-barrelled surname only
    name_swap: float = 0.0  # first and middle forename swapped
    dob_typo: float = 0.0  # one digit of the date of birth wrong (still a real date)
    dob_transposed: float = 0.0  # day and month swapped (when both are <= 12)
    missing_field: float = 0.0  # one non-key field left out (null)
    stale_address: float = 0.0  # the household's previous address instead of the current one
    postcode_typo: float = 0.0  # one character of the postcode wrong, or its space dropped
    unknown_sex: float = 0.0  # the source's "unknown" sex code
    case_noise: float = 0.0  # names in lower, upper or random case
    whitespace_noise: float = 0.0  # leading, trailing or doubled spaces in names and address
    nhs_number_typo: float = 0.0  # one digit of the NHS number wrong or two swapped

    def rate(self, kind: str) -> float:
        return float(getattr(self, kind))


def _default_error_rates() -> dict[str, FeedErrorRates]:
    """GRO is the cleanest source; DWP (claim forms) and the school census the noisiest."""
    return {
        "gro": FeedErrorRates(
            typo_keyboard=0.004, typo_ocr=0.002, surname_part=0.02, name_swap=0.001,
            dob_typo=0.001, dob_transposed=0.0005, missing_field=0.005, postcode_typo=0.003,
            unknown_sex=0.002, case_noise=0.01, whitespace_noise=0.01, nhs_number_typo=0.002,
        ),
        "dwp": FeedErrorRates(
            typo_keyboard=0.03, typo_ocr=0.02, nickname=0.04, surname_part=0.25, name_swap=0.015,
            dob_typo=0.01, dob_transposed=0.01, missing_field=0.03, stale_address=0.03,
            postcode_typo=0.02, unknown_sex=0.01, case_noise=0.05, whitespace_noise=0.05,
        ),
        "nhs": FeedErrorRates(
            typo_keyboard=0.01, typo_ocr=0.005, nickname=0.01, surname_part=0.1, name_swap=0.005,
            dob_typo=0.003, dob_transposed=0.002, missing_field=0.01, stale_address=0.02,
            postcode_typo=0.005, unknown_sex=0.005, case_noise=0.01, whitespace_noise=0.01,
            nhs_number_typo=0.0005,
        ),
        "census": FeedErrorRates(
            typo_keyboard=0.03, typo_ocr=0.01, nickname=0.05, surname_part=0.3, name_swap=0.01,
            dob_typo=0.01, dob_transposed=0.015, missing_field=0.04, stale_address=0.05,
            postcode_typo=0.03, unknown_sex=0.01, case_noise=0.05, whitespace_noise=0.05,
        ),
    }


@dataclass(frozen=True)
class GeneratorConfig:
    """All rates of the simulation. Rates "per year" apply pro rata each simulated month."""

    years: int = 2  # simulated period after the snapshot
    start_date: dt.date = dt.date(2009, 1, 1)  # the snapshot instant (00:00:00Z)
    # households and names
    single_parent_rate: float = 0.25  # households with one parent/carer
    single_father_rate: float = 0.1  # of single-parent households, those headed by the father
    married_rate: float = 0.6  # two-parent households where the mother took the father's surname
    parent_middle_name_rate: float = 0.4  # parents whose forenames include a middle name
    male_birth_rate: float = 0.513
    child_count_weights: tuple[float, ...] = (0.45, 0.36, 0.13, 0.04, 0.02)  # 1..5 children
    twin_rate: float = 0.016  # births that are twins
    triplet_rate: float = 0.0003  # births that are triplets
    hyphenated_surname_rate: float = 0.04  # children given a double-barrelled surname
    middle_name_rate: float = 0.7  # children with a middle name
    second_middle_name_rate: float = 0.1  # of those, children with two
    hyphen_separator_rate: float = 0.8  # double-barrelled surnames written with a hyphen
    same_town_move_rate: float = 0.7  # moves that stay in the same town
    initial_previous_address_rate: float = 0.2  # households that moved in the 2 years before
    initial_former_surname_rate: float = 0.03  # children with an earlier surname at the start
    sibling_same_school_rate: float = 0.9  # pupils sent to a sibling's school of their phase
    sibling_same_gp_rate: float = 0.95  # children registered with a sibling's GP practice
    # life events
    birth_rate_per_year: float = 0.012  # births per child alive
    first_child_household_rate: float = 0.4  # births that start a new household
    death_rate_per_year: float = 0.0003  # deaths per child alive
    move_rate_per_year: float = 0.10  # whole-household moves per household
    surname_change_rate_per_year: float = 0.015  # a parent's new surname, per household
    arrival_rate_per_year: float = 0.004  # families with children arriving from abroad
    emigration_rate_per_year: float = 0.004  # households leaving England (no further records)
    child_takes_new_surname_rate: float = 0.5  # children whose legal surname follows it
    school_change_rate_per_year: float = 0.03  # school changes without a move
    gp_change_rate_per_year: float = 0.04  # GP changes without a move
    gp_change_on_move_rate: float = 0.7  # moves that also change the GP
    sixth_form_rate: float = 0.55  # pupils staying in school census after year 11
    preferred_diminutive_rate: float = 0.35  # pupils known at school by a diminutive
    preferred_surname_rate: float = 0.3  # pupils who use a parent's new surname at school only
    new_upn_on_school_change_rate: float = 0.05  # a new school issuing a fresh UPN by mistake
    # feed coverage and lags
    snapshot_gro_birth_years: float = 1.0  # children born this recently get a snapshot gro birth
    gro_nhs_number_rate: float = 0.9  # gro births/deaths that carry the NHS number
    dwp_claim_rate: float = 0.96  # children whose family claims child benefit
    dwp_reports_change_rate: float = 0.92  # moves and name changes told to DWP
    nhs_reports_change_rate: float = 0.8  # moves and name changes told to the GP (NHS)
    gro_registration_max_days: int = 42
    dwp_change_lag_days: tuple[int, int] = (0, 45)
    nhs_change_lag_days: tuple[int, int] = (14, 84)
    dwp_claim_lag_days: tuple[int, int] = (7, 120)
    census_submission_days: int = 20  # schools submit over this many days after census day
    # errors and bad input
    bad_line_rate: float = 0.001
    errors: dict[str, FeedErrorRates] = field(default_factory=_default_error_rates)

    @property
    def months(self) -> int:
        return 12 * self.years

    @classmethod
    def from_toml(cls, path: Path) -> GeneratorConfig:
        """A config with the defaults overridden by a TOML file (top-level keys and
        `[errors.<feed>]` tables); unknown keys raise `ValueError`."""
        with Path(path).open("rb") as handle:
            return cls.from_mapping(tomllib.load(handle))

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> GeneratorConfig:
        """A config with the defaults overridden by `values` (same shape as the TOML file)."""
        base = cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown generator setting(s): {', '.join(unknown)}")
        overrides = {key: _coerce(getattr(base, key), value) for key, value in values.items()
                     if key != "errors"}
        errors = _merge_error_rates(base.errors, values.get("errors", {}))
        return replace(base, **overrides, errors=errors)


def _coerce(default: Any, value: Any) -> Any:
    if isinstance(default, dt.date):
        return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
    if isinstance(default, tuple):
        return tuple(value)
    return type(default)(value)


def _merge_error_rates(
    base: dict[str, FeedErrorRates], overrides: dict[str, dict[str, float]]
) -> dict[str, FeedErrorRates]:
    unknown_feeds = sorted(set(overrides) - set(base))
    if unknown_feeds:
        raise ValueError(f"unknown feed(s) in [errors]: {', '.join(unknown_feeds)}")
    merged = dict(base)
    for feed, rates in overrides.items():
        unknown = sorted(set(rates) - set(ERROR_KINDS))
        if unknown:
            raise ValueError(f"unknown error kind(s) for {feed}: {', '.join(unknown)}")
        merged[feed] = replace(base[feed], **{k: float(v) for k, v in rates.items()})
    return merged
