"""The simulated people: households of parents/carers and children, and how they are created."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from dataclasses import dataclass, field

from streams.generator.config import GeneratorConfig
from streams.generator.identifiers import NhsNumbers, nino
from streams.generator.namebank import NameBank
from streams.generator.places import Address, Geography
from streams.names import DIMINUTIVES

_DAYS_PER_YEAR = 365.25
_MIN_SIBLING_GAP_DAYS = 300
_MAX_SIBLING_GAP_DAYS = 5 * 365


@dataclass(slots=True)
class Parent:
    """A parent or carer as the feeds name them (mother: surname may differ from maiden name)."""

    forenames: str
    surname: str
    maiden_surname: str
    sex: str
    nino: str


@dataclass(slots=True)
class Household:
    """Parents/carers and children at one address; the claimant holds the child benefit claim."""

    index: int
    address: Address
    mother: Parent | None
    father: Parent | None
    claims_benefit: bool
    previous_address: Address | None = None
    children: list[Child] = field(default_factory=list)

    @property
    def claimant(self) -> Parent:
        return self.mother or self.father  # type: ignore[return-value]

    @property
    def claim_reference(self) -> str:
        return f"CHB{self.index:08d}"


@dataclass(slots=True, eq=False)
class Child:
    """One person of the truth (`person_id`) with what the four sources know about them."""

    index: int
    household: Household
    sex: str
    first_name: str
    middle_names: str | None
    surname: str
    date_of_birth: dt.date
    birth_town: str
    nhs_number: str
    gp_practice_code: str
    child_reference: str
    stays_for_sixth_form: bool
    preferred_forename: str | None = None
    preferred_surname: str | None = None
    former_surname: str | None = None
    gro_registration_id: str | None = None
    upn: str | None = None
    school_urn: str | None = None
    school_town: int = -1
    school_phase: str = ""
    multiple_birth: int = 1  # 2 for a twin, 3 for a triplet
    alive: bool = True
    in_scope: bool = True  # still under 18 and followed by the feeds
    claim_open: bool = False

    @property
    def person_id(self) -> str:
        return f"P{self.index:08d}"

    @property
    def forenames(self) -> str:
        return f"{self.first_name} {self.middle_names}" if self.middle_names else self.first_name


class Population:
    """Creates households and children (the initial population and newborns) deterministically."""

    def __init__(self, rng: random.Random, config: GeneratorConfig, geography: Geography) -> None:
        self.rng = rng
        self.config = config
        self.geography = geography
        self.names = NameBank()
        self.nhs_numbers = NhsNumbers()
        self.households: list[Household] = []
        self.children: list[Child] = []
        self._postcode_counts = [town.postcodes for town in geography.towns]
        self._child_count_cumulative = _cumulative(config.child_count_weights)

    def populate(self, children: int, start: dt.date) -> None:
        """Households until `children` children aged 0-17 live at `start`."""
        while len(self.children) < children:
            self.household_with_children(start, children - len(self.children))

    def household_with_children(self, day: dt.date, most: int = 5) -> Household:
        """A household with up to `most` children aged 0-17 on `day` (the snapshot's families
        and families arriving from abroad)."""
        rng = self.rng
        household = self.new_household()
        size = rng.choices(range(1, 6), cum_weights=self._child_count_cumulative)[0]
        wanted = min(most, size)
        eldest_age_days = rng.randrange(int(18 * _DAYS_PER_YEAR) - 1)
        dob = day - dt.timedelta(days=eldest_age_days + 1)
        while len(household.children) < wanted and dob < day:
            self.add_birth(household, dob)
            dob += dt.timedelta(days=rng.randint(_MIN_SIBLING_GAP_DAYS, _MAX_SIBLING_GAP_DAYS))
        if rng.random() < self.config.initial_previous_address_rate:
            household.previous_address = self.random_address(household.address.town_index)
        for child in household.children:
            if rng.random() < self.config.initial_former_surname_rate:
                child.former_surname = self.names.surname(rng)
        return household

    def new_household(self) -> Household:
        """An empty household at a fresh address in a town drawn by population."""
        rng = self.rng
        town = rng.choices(range(len(self._postcode_counts)), weights=self.geography.weights)[0]
        father = None
        mother = None
        single = rng.random() < self.config.single_parent_rate
        family_surname = self.names.surname(rng)
        if not single or rng.random() < self.config.single_father_rate:
            father = self._parent("M", family_surname)
        if not single or father is None:
            maiden = family_surname if father is None else self.names.surname(rng)
            married = father is not None and rng.random() < self.config.married_rate
            mother = self._parent("F", family_surname if married else maiden, maiden)
        household = Household(
            index=len(self.households) + 1,
            address=self.random_address(town),
            mother=mother,
            father=father,
            claims_benefit=rng.random() < self.config.dwp_claim_rate,
        )
        self.households.append(household)
        return household

    def random_address(self, town: int) -> Address:
        postcode = self.rng.randrange(self._postcode_counts[town])
        return self.geography.address(town, postcode, self.rng.randint(1, 160))

    def add_birth(self, household: Household, date_of_birth: dt.date) -> list[Child]:
        """A singleton, twins or triplets born to `household` on `date_of_birth`."""
        roll = self.rng.random()
        count = 3 if roll < self.config.triplet_rate else (
            2 if roll < self.config.triplet_rate + self.config.twin_rate else 1)
        surname = self._child_surname(household)
        born: list[Child] = []
        for _ in range(count):
            taken = tuple(c.first_name for c in household.children)
            born.append(self._child(household, date_of_birth, surname, taken, count))
        return born

    def _parent(self, sex: str, surname: str, maiden: str | None = None) -> Parent:
        rng = self.rng
        forenames = self.names.first_name(rng, sex)
        if rng.random() < self.config.parent_middle_name_rate:
            forenames += " " + self.names.first_name(rng, sex, (forenames,))
        return Parent(forenames, surname, maiden or surname, sex, nino(rng))

    def _child_surname(self, household: Household) -> str:
        """The family surname, sometimes double-barrelled (mother's maiden name first)."""
        existing = [c.surname for c in household.children]
        if existing:
            return existing[-1]
        parent = household.father or household.mother
        assert parent is not None
        mother = household.mother
        father = household.father
        if mother and father and mother.maiden_surname != father.surname \
                and self.rng.random() < self.config.hyphenated_surname_rate:
            separator = "-" if self.rng.random() < self.config.hyphen_separator_rate else " "
            return f"{mother.maiden_surname}{separator}{father.surname}"
        return parent.surname

    def practice(self, household: Household) -> str:
        """A GP practice in the household's town, usually the one its other children use."""
        practices = self.geography.towns[household.address.town_index].practices
        for sibling in reversed(household.children):
            if sibling.gp_practice_code in practices:
                if self.rng.random() < self.config.sibling_same_gp_rate:
                    return sibling.gp_practice_code
                break
        return self.rng.choice(practices)

    def _child(
        self, household: Household, dob: dt.date, surname: str, taken: tuple[str, ...],
        multiple_birth: int,
    ) -> Child:
        rng = self.rng
        sex = "M" if rng.random() < self.config.male_birth_rate else "F"
        first = self.names.first_name(rng, sex, taken)
        middle = None
        if rng.random() < self.config.middle_name_rate:
            middle = self.names.first_name(rng, sex, (first,))
            if rng.random() < self.config.second_middle_name_rate:
                middle += " " + self.names.first_name(rng, sex, (first, middle))
        index = len(self.children) + 1
        child = Child(
            index=index,
            household=household,
            sex=sex,
            first_name=first,
            middle_names=middle,
            surname=surname,
            date_of_birth=dob,
            birth_town=household.address.town,
            nhs_number=self.nhs_numbers.issue(),
            gp_practice_code=self.practice(household),
            child_reference=f"{household.claim_reference}/{len(household.children) + 1:02d}",
            stays_for_sixth_form=rng.random() < self.config.sixth_form_rate,
            multiple_birth=multiple_birth,
        )
        forms = DIMINUTIVES.get(first.upper())
        if forms and rng.random() < self.config.preferred_diminutive_rate:
            child.preferred_forename = rng.choice(forms).title()
        household.children.append(child)
        self.children.append(child)
        return child


def _cumulative(weights: tuple[float, ...]) -> list[float]:
    return list(itertools.accumulate(weights))
