"""Which field of each feed plays which part (names, date of birth, sex, address, keys)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldRoles:
    """The fields of one feed that errors and bad lines act on."""

    forenames: str  # first forename, followed by middle names where the feed joins them
    middle_names: str | None  # a separate middle-names field (nhs only)
    surname: str
    date_of_birth: str
    sex: str
    unknown_sex: tuple[str | None, ...]  # the source's codes for "unknown"
    address: tuple[str, ...]  # address fields, postcode last
    nhs_number: str | None
    keys: tuple[str, ...]  # never dropped by a missing-field error
    dates: tuple[str, ...]  # date fields (an impossible date makes a bad line)

    @property
    def postcode(self) -> str:
        return self.address[-1]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f for f in (self.forenames, self.middle_names, self.surname) if f)


_HEAD = ("record_id", "event_time", "event")
_ADDRESS = ("address_line1", "address_line2", "town", "postcode")

ROLES: dict[str, FieldRoles] = {
    "gro": FieldRoles(
        forenames="forenames", middle_names=None, surname="surname",
        date_of_birth="date_of_birth", sex="sex", unknown_sex=("U",), address=_ADDRESS,
        nhs_number="nhs_number", keys=(*_HEAD, "registration_id", "date_of_death"),
        dates=("date_of_birth", "date_of_death"),
    ),
    "dwp": FieldRoles(
        forenames="child_forenames", middle_names=None, surname="child_surname",
        date_of_birth="child_date_of_birth", sex="child_sex", unknown_sex=(None,),
        address=_ADDRESS, nhs_number=None,
        keys=(*_HEAD, "claim_reference", "child_reference"), dates=("child_date_of_birth",),
    ),
    "nhs": FieldRoles(
        forenames="given_name", middle_names="other_given_names", surname="family_name",
        date_of_birth="birth_date", sex="gender", unknown_sex=("0", "9"), address=_ADDRESS,
        nhs_number="nhs_number", keys=(*_HEAD, "nhs_number", "death_date"),
        dates=("birth_date", "death_date"),
    ),
    "census": FieldRoles(
        forenames="legal_forename", middle_names=None, surname="legal_surname",
        date_of_birth="dob", sex="sex", unknown_sex=(None,), address=("postcode",),
        nhs_number=None, keys=(*_HEAD, "upn", "census_term", "nc_year_group"), dates=("dob",),
    ),
}
