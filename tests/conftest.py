"""Fixtures shared by the test modules."""

import pytest

from linkage_models.scoring import DEFAULT_MODEL_PATH, CompiledModel


@pytest.fixture(scope="session")
def model() -> CompiledModel:
    """The shipped child model."""
    return CompiledModel.from_json(DEFAULT_MODEL_PATH)


@pytest.fixture(scope="module")
def app(master: dict):
    """The web application over the module's `master` fixture (the web test modules')."""
    from engine.web.app import create_app
    from engine.web.context import WebSettings

    return create_app(WebSettings(master["db"]))


@pytest.fixture(scope="module")
def signed_in(app, master: dict) -> dict:
    """A signed-in test client per user of the module's `master`."""
    from tests.web_helpers import signed_in_clients

    return signed_in_clients(app, master["secrets"])
