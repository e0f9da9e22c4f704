"""Normalisation of raw feed values into canonical forms."""

from __future__ import annotations

import doctest
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams import normalise as norm

CANONICAL_NAME = re.compile(r"[A-Z'\-]+(?: [A-Z'\-]+)*")


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(norm)
    assert result.attempted > 20
    assert result.failed == 0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("smith", "SMITH"),
        ("  van  der   Berg ", "VAN DER BERG"),
        ("O'Brien", "O'BRIEN"),
        ("o’brien", "O'BRIEN"),
        ("O`Brien", "O'BRIEN"),
        ("Müller-Lüdenscheidt", "MULLER-LUDENSCHEIDT"),
        ("Søren Ærø", "SOREN AERO"),
        ("Strauß", "STRAUSS"),
        ("Chloé\u0301", "CHLOE"),
        ("J.R.R. Tolkien", "J R R TOLKIEN"),
        ("Smith - Jones", "SMITH-JONES"),
        ("Ann\x00e\tMarie", "ANNE MARIE"),
        ("-Smith-", "SMITH"),
        ("Robert'); DROP TABLE children;--", "ROBERT DROP TABLE CHILDREN"),
        ("Алексей", None),
        ("42", None),
        ("", None),
        (None, None),
    ],
)
def test_names_become_upper_case_ascii_letters_hyphens_apostrophes(raw, expected) -> None:
    assert norm.name(raw) == expected


@given(st.text())
def test_any_text_gives_a_canonical_name_or_none(raw: str) -> None:
    result = norm.name(raw)
    assert result is None or CANONICAL_NAME.fullmatch(result), result


def test_forenames_split_into_first_and_middle_names() -> None:
    assert norm.split_forenames("  mary-jane louise  ann ") == ("MARY-JANE", "LOUISE ANN")
    assert norm.split_forenames("Oliver") == ("OLIVER", None)
    assert norm.split_forenames("  ") == (None, None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("SW1A 1AA", "SW1A 1AA"),
        ("SW1A  1AA", "SW1A 1AA"),
        ("SW1A 1AA\n", "SW1A 1AA"),
        ("SW1A\u00a01AA", "SW1A 1AA"),
        ("sw1a1aa", "SW1A 1AA"),
        (" m1   1ae ", "M1 1AE"),
        ("B33 8TH", "B33 8TH"),
        ("cr2 6xh", "CR2 6XH"),
        ("W1A0AX", "W1A 0AX"),
        ("GIR 0AA", "GIR0AA"),
        ("SW1A 1A", "SW1A1A"),
        ("12345", "12345"),
        ("   ", None),
        (None, None),
    ],
)
def test_postcodes_get_one_space_only_when_uk_shaped(raw, expected) -> None:
    assert norm.postcode(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("9434765919", "9434765919"),
        ("943 476 5919", "9434765919"),
        ("943-476-5919", "9434765919"),
        ("9434765918", "9434765918"),  # bad check digit: kept as evidence
        (" 94347659 ", "94347659"),
        ("unknown", "unknown"),
        ("٩٤٣٤٧٦٥٩١٩", "٩٤٣٤٧٦٥٩١٩"),  # not ASCII digits: not an NHS number, kept verbatim
        (" ", None),
        (None, None),
    ],
)
def test_nhs_numbers_are_ten_digits_or_kept_as_given(raw, expected) -> None:
    assert norm.nhs_number(raw) == expected


def test_codes_lose_case_whitespace_and_control_characters() -> None:
    assert norm.code(" a123 4567 89012\x00 ") == "A123456789012"
    assert norm.code("\u200b") is None


def test_free_text_keeps_words_in_single_spaces() -> None:
    assert norm.text("  Flat 2,\t12  High st ") == "FLAT 2, 12 HIGH ST"
    assert norm.text("A\x07B \x00 C") == "AB C"
    assert norm.text("\r\n") is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("M", "M"), ("f", "F"), (" F ", "F"), ("U", None), ("X", None), ("", None), (None, None)],
)
def test_sex_codes_map_to_m_f_or_none(raw, expected) -> None:
    assert norm.sex(raw, {"M": "M", "F": "F"}) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "2009-02-29",
        "2009-13-01",
        "20090101",
        "2009-W01-1",
        "2009-1-1",
        "2009-01-01T00:00:00",
        "01/02/2009",
        "２００９-01-01",
        "0000-01-01",
    ],
)
def test_calendar_dates_must_be_real_and_yyyy_mm_dd(raw: str) -> None:
    with pytest.raises(ValueError):
        norm.calendar_date(raw)


def test_calendar_dates_accept_real_dates_and_blank() -> None:
    assert norm.calendar_date("2008-02-29") == "2008-02-29"
    assert norm.calendar_date(" 2009-12-31\r") == "2009-12-31"
    assert norm.calendar_date(" ") is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2009-01-05T10:00:00Z", "2009-01-05T10:00:00Z"),
        ("2009-01-05T10:00:00+00:00", "2009-01-05T10:00:00Z"),
        ("2009-01-05T00:30:00+01:00", "2009-01-04T23:30:00Z"),
        ("2009-01-05T23:30:00-05:00", "2009-01-06T04:30:00Z"),
        ("2009-01-05 10:00:00.999999Z", "2009-01-05T10:00:00Z"),
        ("2009-01-05T10:00Z", "2009-01-05T10:00:00Z"),
        ("20090105T100000Z", "2009-01-05T10:00:00Z"),
    ],
)
def test_event_times_become_utc_seconds(raw: str, expected: str) -> None:
    assert norm.utc_timestamp(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "2009-01-05T10:00:00",
        "2009-01-05",
        "2009-01-05T25:00:00Z",
        "yesterday",
        "",
        "0001-01-01T00:00:00+01:00",
        "2009-01-05T10:00:00z",
    ],
)
def test_event_times_without_offset_or_real_time_are_rejected(raw: str) -> None:
    with pytest.raises(ValueError):
        norm.utc_timestamp(raw)
