"""Clean feed record bodies (before errors) in each source's own format and conventions.

A body is every field of a record except `record_id`, `event_time` and `event` (the writer adds
those).
Conventions that are the source's, not noise: GRO and NHS print surnames in capitals, DWP and the
census in title case; NHS gender codes are `1`/`2`; every value is a string or None.
"""

from __future__ import annotations

import datetime as dt

from streams.generator.places import Address
from streams.generator.population import Child, Household

Record = dict[str, str | None]

_NHS_GENDER = {"M": "1", "F": "2"}


def _address_fields(address: Address) -> Record:
    return {
        "address_line1": address.line1,
        "address_line2": address.line2,
        "town": address.town,
        "postcode": address.postcode,
    }


def _parents(household: Household) -> Record:
    mother, father = household.mother, household.father
    return {
        "mother_forenames": mother.forenames if mother else None,
        "mother_surname": mother.surname.upper() if mother else None,
        "mother_maiden_surname": mother.maiden_surname.upper() if mother else None,
        "father_forenames": father.forenames if father else None,
        "father_surname": father.surname.upper() if father else None,
    }


def gro_birth(child: Child, with_nhs_number: bool) -> Record:
    """A birth registration (the child's registration_id is the gro source key)."""
    return {
        "registration_id": child.gro_registration_id,
        "forenames": child.forenames,
        "surname": child.surname.upper(),
        "sex": child.sex,
        "date_of_birth": child.date_of_birth.isoformat(),
        "place_of_birth": child.birth_town,
        **_parents(child.household),
        **_address_fields(child.household.address),
        "nhs_number": child.nhs_number if with_nhs_number else None,
    }


def gro_death(
    child: Child, registration_id: str, date_of_death: dt.date, with_nhs_number: bool
) -> Record:
    """A death registration (its registration_id names the death, not the person)."""
    return {
        "registration_id": registration_id,
        "forenames": child.forenames,
        "surname": child.surname.upper(),
        "sex": child.sex,
        "date_of_birth": child.date_of_birth.isoformat(),
        "date_of_death": date_of_death.isoformat(),
        "place_of_birth": child.birth_town,
        **_parents(child.household),
        **_address_fields(child.household.address),
        "nhs_number": child.nhs_number if with_nhs_number else None,
    }


def dwp_claim(child: Child) -> Record:
    """A child benefit claim record for one child of the claimant's claim."""
    claimant = child.household.claimant
    return {
        "claim_reference": child.household.claim_reference,
        "child_reference": child.child_reference,
        "child_forenames": child.forenames,
        "child_surname": child.surname,
        "child_sex": child.sex,
        "child_date_of_birth": child.date_of_birth.isoformat(),
        "claimant_forenames": claimant.forenames,
        "claimant_surname": claimant.surname,
        "claimant_nino": claimant.nino,
        **_address_fields(child.household.address),
    }


def nhs_demographics(child: Child, date_of_death: dt.date | None = None) -> Record:
    """The child's NHS demographics (registration, change or, with a date of death, death)."""
    return {
        "nhs_number": child.nhs_number,
        "given_name": child.first_name,
        "other_given_names": child.middle_names,
        "family_name": child.surname.upper(),
        "gender": _NHS_GENDER[child.sex],
        "birth_date": child.date_of_birth.isoformat(),
        "death_date": date_of_death.isoformat() if date_of_death else None,
        **_address_fields(child.household.address),
        "gp_practice_code": child.gp_practice_code,
    }


def census_return(child: Child, term: str, year_group: int) -> Record:
    """One pupil's row of a school census return."""
    return {
        "upn": child.upn,
        "census_term": term,
        "school_urn": child.school_urn,
        "legal_forename": child.first_name,
        "legal_surname": child.surname,
        "preferred_forename": child.preferred_forename or child.first_name,
        "preferred_surname": child.preferred_surname or child.surname,
        "former_surname": child.former_surname,
        "dob": child.date_of_birth.isoformat(),
        "sex": child.sex,
        "postcode": child.household.address.postcode,
        "nc_year_group": "R" if year_group == 0 else str(year_group),
    }
