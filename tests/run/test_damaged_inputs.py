"""Damaged inputs are one line: bad model files, in train, eval and chat modes, give one stderr
line naming the file and the problem, exit status 2; weights holding NaN are refused at load; a
data file with a byte that is not UTF-8 is named with its line."""
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from shipped_configs import REPO

TINY = dict(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
            head_dim=8)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny random model with the embedded model's tokenizer, as an HF directory."""
    import negojax
    model = negojax.load_model("default", random_init=True, overrides=TINY)
    return negojax.export_hf(model, str(tmp_path_factory.mktemp("tiny") / "model"))


def _variant(tiny_dir, root, name, damage) -> str:
    out = os.path.join(root, name)
    shutil.copytree(tiny_dir, out)
    damage(out)
    return out


def _rewrite_config(**changes):
    def damage(path):
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        cfg.update(changes)
        with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f)
    return damage


def _truncate(path):
    weights = os.path.join(path, "model.safetensors")
    with open(weights, "r+b") as f:
        f.truncate(os.path.getsize(weights) // 2)


def _nan_weight(path):
    weights = os.path.join(path, "model.safetensors")
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].copy()
    tensors[name].flat[0] = np.nan
    save_file(tensors, weights)


@pytest.fixture(scope="module")
def damaged(tiny_dir, tmp_path_factory):
    """{case: (model path, text the one line must hold)}."""
    from negojax.checkpoints.default_model import default_gguf_path
    root = str(tmp_path_factory.mktemp("damaged"))
    garbage = os.path.join(root, "garbage.gguf")
    with open(garbage, "wb") as f:
        f.write(os.urandom(4096))
    truncated = os.path.join(root, "truncated.gguf")
    with open(default_gguf_path(), "rb") as src, open(truncated, "wb") as dst:
        dst.write(src.read(1 << 20))
    return {
        "no weights": (_variant(tiny_dir, root, "no-weights",
                                lambda p: os.remove(os.path.join(p, "model.safetensors"))),
                       "no model.safetensors"),
        "truncated weights": (_variant(tiny_dir, root, "truncated", _truncate),
                              "model.safetensors"),
        "wrong shape": (_variant(tiny_dir, root, "shape", _rewrite_config(hidden_size=48)),
                        "has shape"),
        "unsupported model_type": (_variant(tiny_dir, root, "mamba", _rewrite_config(
            model_type="mamba", architectures=["MambaForCausalLM"])), "config.json"),
        "NaN weights": (_variant(tiny_dir, root, "nan", _nan_weight), "holds NaN or Inf"),
        "garbage GGUF": (garbage, "garbage.gguf"),
        "truncated GGUF": (truncated, "truncated.gguf"),
    }


def _cli(mode: str, path: str, workdir: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "NEGOJAX_CACHE": os.path.join(workdir, "cache")}  # GGUF conversions land here
    return subprocess.run([sys.executable, "-m", "negojax.main", "--config=configs/default.py",
                           f"--config.mode={mode}", f"--config.model.path={path}",
                           f"--config.workdir={workdir}/run", "--config.jax_cache_dir="],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_every_damaged_model_file_is_one_line_with_status_2(damaged, tmp_path):
    cases = [(name, "chat") for name in damaged] + [("truncated weights", "train"),
                                                     ("NaN weights", "eval")]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        procs = list(pool.map(lambda c: _cli(c[1], damaged[c[0]][0], str(tmp_path / c[1])),
                              cases))
    problems = []
    for (name, mode), proc in zip(cases, procs):
        lines = proc.stderr.strip().splitlines()
        if proc.returncode != 2 or len(lines) != 1 or "Traceback" in proc.stderr \
                or damaged[name][1] not in lines[0] or "config.model.path" not in lines[0]:
            problems.append(f"{name} ({mode}): exit {proc.returncode}: {proc.stderr[-400:]}")
    print(f"{len(cases)} damaged model files tried, {len(cases) - len(problems)} refused in "
          "one line")
    assert not problems, "\n".join(problems)


def test_nan_weights_are_refused_by_the_api_too(damaged):
    import negojax
    with pytest.raises(ValueError, match="holds NaN or Inf") as error:
        negojax.load_model(damaged["NaN weights"][0])
    assert "\n" not in str(error.value)


def test_a_data_file_byte_that_is_not_utf8_is_named_with_its_line(tmp_path):
    from negojax.data import load_tasks
    valid = os.path.join(REPO, "tests", "data", "valid")
    shutil.copytree(valid, tmp_path / "resources")
    dilemmas = tmp_path / "resources" / "dilemmas.jsonl"
    lines = dilemmas.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"a", b"\xff", 1)
    dilemmas.write_bytes(b"".join(lines))
    with pytest.raises(ValueError, match=r"dilemmas.jsonl line 2: byte \d+ \(b'\\xff'\) is not "
                                         r"UTF-8") as error:
        load_tasks("train", resources_dir=str(tmp_path / "resources"),
                   data_dir=str(tmp_path / "tfds"))
    assert "\n" not in str(error.value)
