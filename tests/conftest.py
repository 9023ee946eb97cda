import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope="session")
def default_model():
    """The embedded SmolLM2-135M-Instruct (converted once into the negojax cache)."""
    import negojax
    return negojax.load_model("default")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs a real model or several processes (minutes)")
