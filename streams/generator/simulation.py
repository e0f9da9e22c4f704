"""The life of the population month by month, and the feed records each event causes."""

from __future__ import annotations

import datetime as dt
import math
import random
import zlib
from collections.abc import Callable
from functools import partial

from streams.generator import feeds
from streams.generator.config import GeneratorConfig
from streams.generator.dates import census_days, last_census_before, months, year_group
from streams.generator.identifiers import upn
from streams.generator.places import Geography
from streams.generator.population import Child, Household, Population
from streams.generator.summary import GenerateSummary
from streams.generator.writer import FeedWriter, period_end

Progress = Callable[[int, int], None]
_DAY = 86400
_OFFICE_OPENS = 8 * 3600
_OFFICE_HOURS = 10 * 3600
_LAST_YEAR_GROUP = 13
_LAST_COMPULSORY_YEAR_GROUP = 11
_PICK_ATTEMPTS = 100


class Simulation:
    """Simulates `config.years` of life after a snapshot and emits every feed record."""

    def __init__(self, rng: random.Random, config: GeneratorConfig, population: Population,
                 writer: FeedWriter, summary: GenerateSummary) -> None:
        self.rng = rng
        self.config = config
        self.population = population
        self.geography: Geography = population.geography
        self.writer = writer
        self.summary = summary
        self.start = config.start_date
        self._upn_serial = 0
        self._gro_serial = 0
        self._alive = 0  # children in scope (alive and under 18)

    def run(self, children: int, progress: Progress | None) -> None:
        """The snapshot of `children` children, then every simulated month, written as it ends.

        Progress counts the snapshot's children, then as much again spread over the months.
        """
        report = progress or (lambda done, total: None)
        self.population.populate(children, self.start)
        snapshot = self.summary.children = self._alive = len(self.population.children)
        total = 2 * snapshot
        self._snapshot(lambda done: report(done, total))
        calendar = list(months(self.start, period_end(self.config)))
        for index, first, last in calendar:
            self._simulate_month(first, last)
            self.writer.flush_month(index)
            report(snapshot + snapshot * (index + 1) // len(calendar), total)
        self._count_people()

    # the snapshot ------------------------------------------------------------------------------

    def _snapshot(self, report: Callable[[int], None]) -> None:
        """Every child alive at the start, as ordinary events dated at the snapshot instant."""
        census_day, term = last_census_before(self.start)
        recent_birth = self.start - dt.timedelta(days=round(
            365.25 * self.config.snapshot_gro_birth_years))
        step = max(1, len(self.population.children) // 100)
        for done, child in enumerate(self.population.children, start=1):
            self._nhs(child, "registration", 0)
            if child.household.claims_benefit:
                self._dwp(child, "new_claim", 0)
                child.claim_open = True
            if child.date_of_birth >= recent_birth:
                self._gro_birth(child, 0)
            self._census(child, census_day, term, 0)
            if done % step == 0:
                report(done)

    # one month ---------------------------------------------------------------------------------

    def _simulate_month(self, first: dt.date, last: dt.date) -> None:
        """Life events of the month in day order; a census sees the moves before its day."""
        days = (last - first).days + 1
        share = days / 365.25
        alive = self._alive
        households = len(self.population.households)
        config = self.config
        actions: list[tuple[int, int, Callable[[dt.date], None]]] = []

        def plan(rate: float, base: int, action: Callable[[dt.date], None]) -> None:
            for _ in range(_poisson(self.rng, rate * base * share)):
                actions.append((self.rng.randrange(days), len(actions), action))

        plan(config.birth_rate_per_year, alive, self._birth)
        plan(config.death_rate_per_year, alive, self._death)
        plan(config.move_rate_per_year, households, self._move)
        plan(config.surname_change_rate_per_year, households, self._surname_change)
        plan(config.arrival_rate_per_year, households, self._arrival)
        plan(config.emigration_rate_per_year, households, self._emigration)
        plan(config.gp_change_rate_per_year, alive, self._gp_change)
        plan(config.school_change_rate_per_year, alive, self._school_change)
        for day, term in census_days(first.year):
            if first <= day <= last:
                actions.append(((day - first).days, len(actions), partial(self._census_day, term)))
        if first.month == 9:
            actions.append((0, len(actions), self._school_year_start))
        actions.sort(key=lambda action: action[:2])
        for offset, _, action in actions:
            action(first + dt.timedelta(days=offset))

    def _birth(self, day: dt.date) -> None:
        household = self._birth_household(day)
        for child in self.population.add_birth(household, day):
            self.summary.births += 1
            self._alive += 1
            self._nhs(child, "registration", self._second(day, self.rng.randint(0, 7)))
            self._gro_birth(child, self._second(
                day, self.rng.randint(1, self.config.gro_registration_max_days)))
            if household.claims_benefit:
                child.claim_open = True
                self._dwp(child, "new_claim", self._lagged(day, self.config.dwp_claim_lag_days))

    def _death(self, day: dt.date) -> None:
        child = self._random_child()
        if child is None:
            return
        child.alive = child.in_scope = False
        self._alive -= 1
        self.summary.deaths += 1
        self._gro_serial += 1
        registration_id = f"D{day.year}{self._gro_serial:08d}"
        with_nhs = self.rng.random() < self.config.gro_nhs_number_rate
        self.writer.emit("gro", "death", self._second(day, self.rng.randint(1, 5)), child,
                         feeds.gro_death(child, registration_id, day, with_nhs))
        self.writer.emit("nhs", "death", self._second(day, self.rng.randint(1, 14)), child,
                         feeds.nhs_demographics(child, day))
        if child.claim_open:
            child.claim_open = False
            self._dwp(child, "claim_ended", self._lagged(day, self.config.dwp_change_lag_days))

    def _move(self, day: dt.date) -> None:
        household = self._random_household()
        if household is None:
            return
        self.summary.moves += 1
        town = household.address.town_index
        if self.rng.random() >= self.config.same_town_move_rate:
            town = self.rng.choices(range(len(self.geography.towns)),
                                    weights=self.geography.weights)[0]
        new_practice = None
        if town != household.address.town_index or \
                self.rng.random() < self.config.gp_change_on_move_rate:
            new_practice = self.rng.choice(self.geography.towns[town].practices)
        household.previous_address = household.address
        household.address = self.population.random_address(town)
        for child in _followed(household):
            if child.claim_open and self.rng.random() < self.config.dwp_reports_change_rate:
                self._dwp(child, "change_of_address",
                          self._lagged(day, self.config.dwp_change_lag_days))
            child.gp_practice_code = new_practice or child.gp_practice_code
            if self.rng.random() < self.config.nhs_reports_change_rate:
                self._nhs(child, "change", self._lagged(day, self.config.nhs_change_lag_days))

    def _arrival(self, day: dt.date) -> None:
        """A family from abroad: NHS registration within weeks, a claim, then school."""
        household = self.population.household_with_children(day)
        for child in household.children:
            self.summary.arrivals += 1
            self._alive += 1
            self._nhs(child, "registration", self._lagged(day, self.config.nhs_change_lag_days))
            if household.claims_benefit:
                child.claim_open = True
                self._dwp(child, "new_claim", self._lagged(day, self.config.dwp_claim_lag_days))

    def _emigration(self, day: dt.date) -> None:
        """A household leaves: its claims end and no source hears of its children again."""
        household = self._random_household()
        if household is None:
            return
        self.summary.emigrations += 1
        for child in _followed(household):
            child.in_scope = False
            self._alive -= 1
            if child.claim_open:
                child.claim_open = False
                self._dwp(child, "claim_ended", self._lagged(day, self.config.dwp_change_lag_days))

    def _surname_change(self, day: dt.date) -> None:
        household = self._random_household()
        if household is None or household.mother is None:
            return
        self.summary.surname_changes += 1
        new_surname = self.population.names.surname(self.rng)
        household.mother.surname = new_surname
        for child in _followed(household):
            if self.rng.random() < self.config.child_takes_new_surname_rate:
                child.former_surname, child.surname = child.surname, new_surname
                child.preferred_surname = None
                if child.claim_open and self.rng.random() < self.config.dwp_reports_change_rate:
                    self._dwp(child, "change_of_name",
                              self._lagged(day, self.config.dwp_change_lag_days))
                if self.rng.random() < self.config.nhs_reports_change_rate:
                    self._nhs(child, "change", self._lagged(day, self.config.nhs_change_lag_days))
            elif self.rng.random() < self.config.preferred_surname_rate:
                child.preferred_surname = new_surname

    def _gp_change(self, day: dt.date) -> None:
        child = self._random_child()
        if child is None:
            return
        self.summary.gp_changes += 1
        practices = self.geography.towns[child.household.address.town_index].practices
        child.gp_practice_code = self.rng.choice(practices)  # not a sibling's: a change
        self._nhs(child, "change", self._second(day, self.rng.randint(0, 30)))

    def _school_change(self, day: dt.date) -> None:
        child = self._random_child()
        if child is None or child.school_urn is None:
            return
        self.summary.school_changes += 1
        self._enrol(child, child.school_phase, moved_school=True)

    def _census_day(self, term: str, day: dt.date) -> None:
        for child in self.population.children:
            if child.in_scope:
                self._census(child, day, term, None)

    def _school_year_start(self, day: dt.date) -> None:
        """Leavers of the last summer end their claim; 18-year-olds leave the index."""
        for child in self.population.children:
            if not child.in_scope:
                continue
            if child.date_of_birth.replace(year=child.date_of_birth.year + 18, day=min(
                    child.date_of_birth.day, 28)) <= day:
                child.in_scope = False
                self._alive -= 1
            group = year_group(child.date_of_birth, day)
            left = group == _LAST_YEAR_GROUP + 1 or (
                group == _LAST_COMPULSORY_YEAR_GROUP + 1 and not child.stays_for_sixth_form)
            if left and child.claim_open:
                child.claim_open = False
                self._dwp(child, "claim_ended", self._lagged(day, self.config.dwp_change_lag_days))

    # records -----------------------------------------------------------------------------------

    def _census(self, child: Child, day: dt.date, term: str, second: int | None) -> None:
        """The child's census row if of school age on `day` (at `second`, or the school's
        submission day when None)."""
        group = year_group(child.date_of_birth, day)
        final = _LAST_YEAR_GROUP if child.stays_for_sixth_form else _LAST_COMPULSORY_YEAR_GROUP
        if not 0 <= group <= final:
            return
        phase = "P" if group <= 6 else "S"
        town = child.household.address.town_index
        if child.school_urn is None or child.school_phase != phase or child.school_town != town:
            self._enrol(child, phase, moved_school=child.school_urn is not None)
        if second is None:
            submitted = zlib.crc32(f"{child.school_urn}{term}".encode()) % (
                self.config.census_submission_days + 1)
            second = self._second(day, submitted)
        self.writer.emit("census", "census", second, child,
                         feeds.census_return(child, term, group))

    def _enrol(self, child: Child, phase: str, moved_school: bool) -> None:
        """A school of the phase in the child's town; a UPN on first entry (rarely a new one)."""
        town = self.geography.towns[child.household.address.town_index]
        schools = town.primaries if phase == "P" else town.secondaries
        child.school_urn = self._siblings_school(child, phase, town.index) or \
            self.rng.choice(schools)
        child.school_phase = phase
        child.school_town = town.index
        fresh_upn = moved_school and self.rng.random() < self.config.new_upn_on_school_change_rate
        if child.upn is None or fresh_upn:
            self._upn_serial += 1
            child.upn = upn(town.la_code, self._upn_serial)

    def _siblings_school(self, child: Child, phase: str, town: int) -> str | None:
        """Usually the school a sibling of the same phase already attends in the same town."""
        for sibling in child.household.children:
            if sibling is not child and sibling.in_scope and sibling.school_phase == phase \
                    and sibling.school_town == town and sibling.school_urn != child.school_urn:
                if self.rng.random() < self.config.sibling_same_school_rate:
                    return sibling.school_urn
                return None
        return None

    def _gro_birth(self, child: Child, second: int) -> None:
        self._gro_serial += 1
        child.gro_registration_id = f"B{child.date_of_birth.year}{self._gro_serial:08d}"
        with_nhs = self.rng.random() < self.config.gro_nhs_number_rate
        self.writer.emit("gro", "birth", second, child, feeds.gro_birth(child, with_nhs))

    def _nhs(self, child: Child, event: str, second: int) -> None:
        self.writer.emit("nhs", event, second, child, feeds.nhs_demographics(child))

    def _dwp(self, child: Child, event: str, second: int) -> None:
        self.writer.emit("dwp", event, second, child, feeds.dwp_claim(child))

    # choices and time --------------------------------------------------------------------------

    def _birth_household(self, day: dt.date) -> Household:
        """A new family, or an existing one whose youngest child is old enough for a sibling."""
        if self.rng.random() >= self.config.first_child_household_rate:
            for _ in range(_PICK_ATTEMPTS):
                household = self.rng.choice(self.population.households)
                youngest = household.children[-1] if household.children else None
                if youngest is not None and youngest.in_scope and \
                        (day - youngest.date_of_birth).days > 300:
                    return household
        return self.population.new_household()

    def _random_child(self) -> Child | None:
        for _ in range(_PICK_ATTEMPTS):
            child = self.rng.choice(self.population.children)
            if child.in_scope:
                return child
        return None

    def _random_household(self) -> Household | None:
        for _ in range(_PICK_ATTEMPTS):
            household = self.rng.choice(self.population.households)
            if any(child.in_scope for child in household.children):
                return household
        return None

    def _second(self, day: dt.date, lag_days: int) -> int:
        """A second in office hours, `lag_days` after `day`, counted from the snapshot."""
        return ((day - self.start).days + lag_days) * _DAY + _OFFICE_OPENS + \
            self.rng.randrange(_OFFICE_HOURS)

    def _lagged(self, day: dt.date, lag_days: tuple[int, int]) -> int:
        return self._second(day, self.rng.randint(*lag_days))

    def _count_people(self) -> None:
        summary = self.summary
        summary.persons = len(self.population.children)
        summary.households = len(self.population.households)
        for child in self.population.children:
            # counted once per set, at its first-born member (siblings are in birth order)
            siblings = child.household.children
            position = siblings.index(child)
            if child.multiple_birth > 1 and (
                    position == 0 or siblings[position - 1].date_of_birth != child.date_of_birth):
                if child.multiple_birth == 2:
                    summary.twin_sets += 1
                else:
                    summary.triplet_sets += 1


def _followed(household: Household) -> list[Child]:
    return [child for child in household.children if child.in_scope]


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count (normal approximation for large means), from `rng` only."""
    if mean <= 0:
        return 0
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    threshold, count, product = math.exp(-mean), 0, rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count
