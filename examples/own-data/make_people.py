"""Writes people.csv beside this script: a small, deterministic hospital patient list in which some
children were registered twice (a nickname, a typo, a swapped day and month, a missing NHS number)
and some have moved house (same MRN, new address). The `person` column is the truth.

    .venv/bin/python examples/own-data/make_people.py
"""

from __future__ import annotations

import csv
import random
from datetime import date, timedelta
from pathlib import Path

PEOPLE = 150
SEED = 2024
COLUMNS = ("patient_ref", "mrn", "forename", "family_name", "dob", "gender", "address", "town",
           "postcode", "nhs_no", "updated", "person")
NICKNAMES = {"OLIVER": "Ollie", "WILLIAM": "Will", "THOMAS": "Tom", "JAMES": "Jamie",
             "ALFRED": "Alfie", "SAMUEL": "Sam", "ELIZABETH": "Beth", "ISABELLA": "Bella",
             "CHARLOTTE": "Lottie", "SAMANTHA": "Sammy", "JOSHUA": "Josh", "DANIEL": "Danny"}
BOYS = ("Oliver", "William", "Thomas", "James", "Alfred", "Samuel", "Joshua", "Daniel", "Noah",
        "George", "Leo", "Arthur", "Harrison", "Jacob", "Ethan", "Mohammed", "Isaac", "Lucas")
GIRLS = ("Elizabeth", "Isabella", "Charlotte", "Samantha", "Olivia", "Amelia", "Isla", "Ava",
         "Mia", "Grace", "Freya", "Lily", "Emily", "Poppy", "Sophia", "Evie", "Aisha", "Ivy")
SURNAMES = ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
            "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green",
            "Hall", "Wood", "Jackson", "Clarke", "Patel", "Khan", "Hughes", "O'Neil", "Lewis")
STREETS = ("High Street", "Station Road", "Church Lane", "Park Avenue", "Mill Road",
           "Victoria Road")
INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
TOWNS = {"Leeds": ("LS6", "LS7", "LS8"), "York": ("YO10", "YO24"), "Bradford": ("BD3", "BD9")}


def main() -> None:
    rng = random.Random(SEED)
    rows = [row for person in range(1, PEOPLE + 1) for row in _records_of(rng, person)]
    rows.append({**rows[7], "patient_ref": "P9999", "mrn": "M9999", "dob": "31/02/2015"})
    with (Path(__file__).parent / "people.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _records_of(rng: random.Random, person: int) -> list[dict[str, str]]:
    """A person's first registration and, for about a third of them, one more record."""
    first = _registration(rng, person)
    kind = rng.choice(("none", "none", "duplicate", "moved"))
    if kind == "duplicate":
        return [first, _duplicate(rng, first, person)]
    if kind == "moved":
        return [first, {**first, **_address(rng), "patient_ref": f"P{person:04d}b",
                        "updated": "2024-06-01T09:00:00"}]
    return [first]


def _registration(rng: random.Random, person: int) -> dict[str, str]:
    gender = rng.choice("12")
    born = date(2008, 1, 1) + timedelta(days=rng.randrange(12 * 365))
    return {
        "patient_ref": f"P{person:04d}", "mrn": f"M{person:04d}",
        "forename": rng.choice(BOYS if gender == "1" else GIRLS),
        "family_name": rng.choice(SURNAMES),
        "dob": born.strftime("%d/%m/%Y"), "gender": gender, **_address(rng),
        "nhs_no": _nhs_number(rng), "updated": "2024-01-15T09:00:00", "person": f"person-{person}",
    }


def _duplicate(rng: random.Random, first: dict[str, str], person: int) -> dict[str, str]:
    """A second registration of the same child under a new MRN, with one difference."""
    twin = {**first, "patient_ref": f"P{person:04d}d", "mrn": f"M{person + 5000:04d}",
            "updated": "2024-03-10T14:30:00"}
    change = rng.choice(("nickname", "typo", "day_month", "no_nhs"))
    if change == "nickname" and first["forename"].upper() in NICKNAMES:
        twin["forename"] = NICKNAMES[first["forename"].upper()]
    elif change in ("typo", "nickname"):
        name = first["family_name"]
        i = rng.randrange(len(name) - 1)
        twin["family_name"] = name[:i] + name[i + 1] + name[i] + name[i + 2:]
    elif change == "day_month" and int(first["dob"][:2]) <= 12:
        day, month, year = first["dob"].split("/")
        twin["dob"] = f"{month}/{day}/{year}"
    else:
        twin["nhs_no"] = ""
    return twin


def _address(rng: random.Random) -> dict[str, str]:
    town = rng.choice(sorted(TOWNS))
    letters = "".join(rng.choices(INWARD_LETTERS, k=2))
    postcode = f"{rng.choice(TOWNS[town])} {rng.randrange(1, 10)}{letters}"
    return {"address": f"{rng.randrange(1, 120)} {rng.choice(STREETS)}", "town": town,
            "postcode": postcode}


def _nhs_number(rng: random.Random) -> str:
    """A ten-digit NHS number with a valid modulus-11 check digit."""
    while True:
        digits = [rng.randrange(10) for _ in range(9)]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        if check == 11:
            check = 0
        if check != 10:
            return "".join(map(str, digits)) + str(check)


if __name__ == "__main__":
    main()
