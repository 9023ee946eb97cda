import os
import sys

import pytest

# Shared cases, references and process runners live in tests/helpers.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "helpers"))


@pytest.fixture(scope="session")
def smollm_dir(tmp_path_factory):
    """The embedded default converted from its GGUF once per test session, in a session cache
    (so the conversion itself is under test, not a cached copy from an earlier run)."""
    from negojax.checkpoints import default_model as default_model_module
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEGOJAX_CACHE", str(tmp_path_factory.getbasetemp() / "negojax-cache"))
        return default_model_module.default_model_dir()


@pytest.fixture(scope="session")
def default_model():
    """The embedded SmolLM2-135M-Instruct (converted once into the negojax cache)."""
    import negojax
    return negojax.load_model("default")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs a real model or several processes (minutes)")
