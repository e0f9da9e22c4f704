"""Synthetic England: a simulated child population and its four national feeds, with truth.

    summary = generate(children=20_000, seed=1, out=Path("data/demo"))

writes `out/feeds/<feed>/YYYY-MM.jsonl` (gro, dwp, nhs, census) and `out/truth.csv`; the same
seed and config give byte-identical files. See docs/feeds.md for every field, error and rate.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

from streams.generator.config import BAD_KINDS, ERROR_KINDS, FeedErrorRates, GeneratorConfig
from streams.generator.places import Geography
from streams.generator.population import Population
from streams.generator.simulation import Simulation
from streams.generator.summary import GenerateSummary
from streams.generator.writer import TRUTH_HEADER, FeedWriter

__all__ = [
    "BAD_KINDS",
    "ERROR_KINDS",
    "TRUTH_HEADER",
    "FeedErrorRates",
    "GenerateSummary",
    "GeneratorConfig",
    "generate",
]


MULTIPLE_BIRTHS_FILE = "multiple_births.csv"


def write_multiple_births(population: Population, path: Path) -> None:
    """`person_id,set_id` of every twin and triplet (the hardest non-matches), so evaluation can
    check that no multiple-birth set was merged into one child."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("person_id,set_id\n")
        for household in population.households:
            for child in household.children:
                if child.multiple_birth > 1:
                    handle.write(f"{child.person_id},H{household.index}-{child.date_of_birth}\n")


def generate(
    children: int,
    seed: int,
    out: Path,
    config: GeneratorConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> GenerateSummary:
    """Simulates `children` children from the snapshot on and writes their feeds and truth.

    `progress(done, total)` is called about every 1% of the work; `done == total` at the end.
    Existing `*.jsonl` files in `out/feeds/<feed>/` are replaced.
    """
    if children < 1:
        raise ValueError("children must be at least 1")
    config = config or GeneratorConfig()
    began = time.perf_counter()
    rng = random.Random(seed)
    summary = GenerateSummary()
    out = Path(out)
    writer = FeedWriter(rng, config, out, summary)
    population = Population(rng, config, Geography(children))
    Simulation(rng, config, population, writer, summary).run(children, progress)
    writer.close()
    write_multiple_births(population, out / MULTIPLE_BIRTHS_FILE)
    summary.seconds = round(time.perf_counter() - began, 3)
    return summary
