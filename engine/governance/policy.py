"""Governance limits and retention ages: the defaults in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GovernancePolicy:
    """Bounds on hostile input, search exposure, accreditation and retention."""

    # every free-text argument (search name, postcode, organisation) is at most this long
    max_field_chars: int = 200
    max_reason_chars: int = 500
    # search: hits shown by default and at most; the least Bayes factor the probe's fields must
    # give a child (1: the evidence does not speak against it — a probe with few fields gives
    # low probabilities, so a probability floor would hide the right child); the most candidate
    # pairs one search may score (a broader search is refused, not truncated)
    search_limit: int = 10
    max_search_limit: int = 100
    min_bayes_factor: float = 1.0
    max_candidate_pairs: int = 20_000
    # accreditation (enhanced checks) is renewed at least every this many years
    accreditation_max_years: int = 3
    # sign-in: the shortest password; wrong passwords or codes in a row that lock a user, and
    # for how long
    min_password_chars: int = 12
    max_failed_signins: int = 5
    lockout_minutes: int = 15
    # retention: archive at the 18th birthday (25th for a consenting care leaver), a deceased
    # child a year after death; purge six years after archiving
    archive_age: int = 18
    care_leaver_archive_age: int = 25
    years_kept_after_death: int = 1
    years_archived_before_purge: int = 6
    # the audit log keeps a search probe's name, date of birth and postcode this long (for
    # investigating misuse), then only a salted commitment of them (the chain still verifies)
    audit_personal_data_days: int = 180


DEFAULT_POLICY = GovernancePolicy()
