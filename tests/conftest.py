"""Fixtures shared by the test modules."""

import pytest

from linkage_models.scoring import DEFAULT_MODEL_PATH, CompiledModel


@pytest.fixture(scope="session")
def model() -> CompiledModel:
    """The shipped child model."""
    return CompiledModel.from_json(DEFAULT_MODEL_PATH)
