"""The child model's comparisons: how two canonical records are compared, field by field.

Each function returns one Splink comparison whose levels are listed in its docstring, first
level first (Splink takes the first level whose condition holds). Column names are canonical
`Update` fields; Splink adds the `_l` / `_r` suffixes for the two records of a pair.
"""

from __future__ import annotations

import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink.internals.comparison_creator import ComparisonCreator

# m of "first names share nothing", fixed rather than trained: twins share date of birth,
# surname and postcode (over +30 of match weight together), so a wholly different first name
# must outweigh all three; an agreeing NHS number can still outweigh it.
FIRST_NAME_DIFFERENT_M = 1e-8


def child_comparisons() -> list[ComparisonCreator]:
    """The comparisons of the child model, in waterfall order."""
    return [
        first_name_comparison(),
        surname_comparison(),
        date_of_birth_comparison(),
        sex_comparison(),
        postcode_comparison(),
        nhs_number_comparison(),
    ]


def first_name_comparison() -> ComparisonCreator:
    """`first_name` levels: null; exact (term-frequency adjusted); same standard form
    (diminutive ↔ formal) or a preferred first name equal to the other's first or preferred
    name; Jaro-Winkler ≥ 0.92; Jaro-Winkler ≥ 0.85; one starts the other (a short form such
    as EM / EMILY, or a name split by a stray space, G / GEORGIA); first name is one of the
    other's middle names (first/middle swap); all other (m fixed at FIRST_NAME_DIFFERENT_M,
    not trained)."""
    preferred_match = (
        "first_name_std_l = first_name_std_r"
        " OR preferred_first_name_l = first_name_r"
        " OR preferred_first_name_r = first_name_l"
        " OR preferred_first_name_l = preferred_first_name_r"
    )
    short_form = (
        "starts_with(first_name_l, first_name_r) OR starts_with(first_name_r, first_name_l)"
    )
    middle_swap = (
        "list_contains(string_split(middle_names_r, ' '), first_name_l)"
        " OR list_contains(string_split(middle_names_l, ' '), first_name_r)"
    )
    return cl.CustomComparison(
        output_column_name="first_name",
        comparison_description="First name",
        comparison_levels=[
            cll.NullLevel("first_name"),
            cll.ExactMatchLevel("first_name", term_frequency_adjustments=True),
            cll.CustomLevel(preferred_match, "Standard form or preferred name equal"),
            cll.JaroWinklerLevel("first_name", 0.92),
            cll.JaroWinklerLevel("first_name", 0.85),
            cll.CustomLevel(short_form, "One first name starts the other"),
            cll.CustomLevel(middle_swap, "First name is the other's middle name"),
            cll.ElseLevel().configure(
                m_probability=FIRST_NAME_DIFFERENT_M, fix_m_probability=True
            ),
        ],
    )


def surname_comparison() -> ComparisonCreator:
    """`surname` levels: null; exact (term-frequency adjusted); a former or preferred
    surname equal to the other's surname; a shared part of a hyphenated or double-barrelled
    surname; Jaro-Winkler ≥ 0.92; Jaro-Winkler ≥ 0.85; all other."""
    alternative_surname = (
        "former_surname_l = surname_r OR former_surname_r = surname_l"
        " OR preferred_surname_l = surname_r OR preferred_surname_r = surname_l"
    )
    shared_part = (
        "list_has_any(string_split_regex(surname_l, '[- ]'),"
        " string_split_regex(surname_r, '[- ]'))"
    )
    return cl.CustomComparison(
        output_column_name="surname",
        comparison_description="Surname",
        comparison_levels=[
            cll.NullLevel("surname"),
            cll.ExactMatchLevel("surname", term_frequency_adjustments=True),
            cll.CustomLevel(alternative_surname, "Former or preferred surname equal"),
            cll.CustomLevel(shared_part, "Part of a double-barrelled surname equal"),
            cll.JaroWinklerLevel("surname", 0.92),
            cll.JaroWinklerLevel("surname", 0.85),
            cll.ElseLevel(),
        ],
    )


def date_of_birth_comparison() -> ComparisonCreator:
    """`date_of_birth` (`YYYY-MM-DD` strings) levels: null; exact; day and month
    transposed; one character different (Levenshtein ≤ 1); same year and month or within
    a year of each other; all other."""
    transposed = (
        "substr(date_of_birth_l, 1, 4) = substr(date_of_birth_r, 1, 4)"
        " AND substr(date_of_birth_l, 6, 2) = substr(date_of_birth_r, 9, 2)"
        " AND substr(date_of_birth_l, 9, 2) = substr(date_of_birth_r, 6, 2)"
    )
    near = (
        "substr(date_of_birth_l, 1, 7) = substr(date_of_birth_r, 1, 7)"
        " OR abs(date_diff('day', try_cast(date_of_birth_l AS DATE),"
        " try_cast(date_of_birth_r AS DATE))) <= 366"
    )
    return cl.CustomComparison(
        output_column_name="date_of_birth",
        comparison_description="Date of birth",
        comparison_levels=[
            cll.NullLevel("date_of_birth"),
            cll.ExactMatchLevel("date_of_birth"),
            cll.CustomLevel(transposed, "Day and month transposed"),
            cll.LevenshteinLevel("date_of_birth", 1),
            cll.CustomLevel(near, "Same year and month, or within a year"),
            cll.ElseLevel(),
        ],
    )


def sex_comparison() -> ComparisonCreator:
    """`sex` levels: null; exact; all other."""
    return cl.ExactMatch("sex")


def postcode_comparison() -> ComparisonCreator:
    """`postcode` levels: null; exact unit; same sector (outward code + first inward
    digit); same district (outward code); all other. Postcodes without the UK shape only
    ever agree exactly."""
    sector = r"regexp_extract(postcode_{side}, '^[A-Z0-9]{{2,4}} [0-9]')"
    district = r"regexp_extract(postcode_{side}, '^([A-Z0-9]{{2,4}}) [0-9]', 1)"
    return cl.CustomComparison(
        output_column_name="postcode",
        comparison_description="Postcode",
        comparison_levels=[
            cll.NullLevel("postcode"),
            cll.ExactMatchLevel("postcode"),
            cll.CustomLevel(_equal_and_not_empty(sector), "Same postcode sector"),
            cll.CustomLevel(_equal_and_not_empty(district), "Same postcode district"),
            cll.ElseLevel(),
        ],
    )


def nhs_number_comparison() -> ComparisonCreator:
    """`nhs_number` levels: null; exact; all other."""
    return cl.ExactMatch("nhs_number")


def _equal_and_not_empty(template: str) -> str:
    """SQL: the expression (with `{side}` for l / r) is equal on both sides and not ''."""
    left, right = template.format(side="l"), template.format(side="r")
    return f"{left} = {right} AND {left} <> ''"
