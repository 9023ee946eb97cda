"""HF model directories: load safetensors into the negojax params pytree, export params back.

Loading reads one tensor at a time: each stacked [L, ...] leaf is allocated once on the host and
filled layer by layer, then moved to its device sharding before the next leaf is built, so the
host never holds a second full copy of the model. Export streams tensors into safetensors files
the same way (see `write_safetensors`).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from typing import Iterable, Iterator, Optional

import jax
import numpy as np
from safetensors import SafetensorError, safe_open

from negojax.checkpoints import hf_layout
from negojax.models.config import ModelConfig
from negojax.models.transformer import param_shapes

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "chat_template.json", "tokenizer.model",
                   "added_tokens.json", "vocab.json", "merges.txt")

_ST_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
              np.dtype(jax.numpy.bfloat16): "BF16"}


def _one_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# ------------------------------------------------------------------------------- loading


def load_hf_config(model_dir: str) -> ModelConfig:
    """The ModelConfig of an HF directory's config.json (one-line errors for bad files)."""
    return ModelConfig.from_hf_file(os.path.join(model_dir, "config.json"))


def _tensor_files(model_dir: str) -> tuple[dict[str, str], str]:
    """(HF tensor name -> path of the safetensors file holding it, the file naming them)."""
    index_path = os.path.join(model_dir, INDEX_FILE)
    single_path = os.path.join(model_dir, SINGLE_FILE)
    if os.path.isfile(index_path):
        try:
            with open(index_path, encoding="utf-8") as f:
                weight_map = json.load(f)["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{index_path}: not a safetensors index with a 'weight_map' "
                             f"({_one_line(e)})") from None
        files = {name: os.path.join(model_dir, shard) for name, shard in weight_map.items()}
        for name, path in files.items():
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{index_path}: tensor {name!r} points at missing shard "
                                        f"{os.path.basename(path)!r}; re-download it")
        return files, INDEX_FILE
    if not os.path.isfile(single_path):
        raise FileNotFoundError(f"{model_dir}: no {SINGLE_FILE} or {INDEX_FILE}; point "
                                "model.path at an HF model directory with safetensors weights")
    with _open_safetensors(single_path) as f:
        return {name: single_path for name in f.keys()}, SINGLE_FILE


def _open_safetensors(path: str):
    try:
        return safe_open(path, framework="numpy")
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({_one_line(e)}); it may be "
                         "truncated, re-download or re-export it") from None


class _TensorReader:
    """Reads single HF tensors by name from the (possibly sharded) checkpoint, checking shapes."""

    def __init__(self, model_dir: str, config: ModelConfig, stack: contextlib.ExitStack):
        self._config = config
        self._files, self._source = _tensor_files(model_dir)
        self._open = {}
        self._stack = stack

    def _handle(self, path: str):
        if path not in self._open:
            self._open[path] = self._stack.enter_context(_open_safetensors(path))
        return self._open[path]

    def read(self, key: str, layer: Optional[int]) -> np.ndarray:
        """Our param `key` (layer slice `layer`) in our layout, read from the HF tensor."""
        name = hf_layout.hf_name(self._config, key, layer)
        path = self._files.get(name)
        if path is None:
            raise ValueError(f"{self._source}: missing tensor {name!r} which config.json implies "
                             f"({self._config.family}, {self._config.num_layers} layers)")
        handle = self._handle(path)
        expected = hf_layout.hf_shape(self._config, key)
        shape = tuple(handle.get_slice(name).get_shape())
        if shape != expected:
            raise ValueError(f"{os.path.basename(path)}: tensor {name!r} has shape {shape} but "
                             f"config.json implies {expected}")
        try:
            value = handle.get_tensor(name)
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{path}: cannot read tensor {name!r} ({_one_line(e)}); the file "
                             "may be truncated, re-download or re-export it") from None
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ValueError(f"{path}: tensor {name!r} holds NaN or Inf; the checkpoint is "
                             "damaged, re-download or re-export it")
        return hf_layout.to_ours(self._config, key, value)


def load_hf_params(model_dir: str, config: ModelConfig, *, dtype=np.float32,
                   shardings: Optional[dict] = None) -> dict:
    """Params pytree from an HF directory's safetensors (one file or sharded with an index).

    `shardings`, a pytree of jax.sharding.Sharding matching the params, places each leaf as soon
    as it is complete; without it leaves go to the default device. lm_head.weight is ignored
    for tied embeddings.
    """
    dtype = np.dtype(dtype)
    shapes = param_shapes(config)
    shardings = shardings or {}
    out = {}
    with contextlib.ExitStack() as stack:
        reader = _TensorReader(model_dir, config, stack)
        for key in shapes:
            if key == "layers":
                continue
            leaf = reader.read(key, None).astype(dtype)
            out[key] = jax.device_put(leaf, shardings.get(key))
            del leaf
        layer_shardings = shardings.get("layers") or {}
        out["layers"] = {}
        for key, shape in shapes["layers"].items():
            leaf = np.empty(shape, dtype)
            for i in range(config.num_layers):
                leaf[i] = reader.read(key, i)
            out["layers"][key] = jax.device_put(leaf, layer_shardings.get(key))
            del leaf
    return out


# ------------------------------------------------------------------------------- export


def write_safetensors(path: str, specs: list[tuple[str, tuple, np.dtype]],
                      tensors: Iterable[tuple[str, np.ndarray]]) -> None:
    """Write a safetensors file from a stream of (name, array), one tensor in memory at a time.

    `specs` lists (name, shape, dtype) in the order `tensors` yields them, so the header (which
    holds every offset) can be written first.
    """
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, dt in specs:
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize
        header[name] = {"dtype": _ST_DTYPES[np.dtype(dt)], "shape": list(shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the reference writer aligns data to 8 bytes
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for (name, shape, dt), (got_name, value) in zip(specs, tensors, strict=True):
            value = np.ascontiguousarray(value, dtype=dt)
            if got_name != name or value.shape != tuple(shape):
                raise AssertionError(f"tensor stream out of order: {got_name} vs {name}")
            f.write(value.tobytes())


def _plan_shards(specs, max_shard_bytes: int) -> list[list]:
    shards, current, size = [], [], 0
    for spec in specs:
        nbytes = int(np.prod(spec[1], dtype=np.int64)) * np.dtype(spec[2]).itemsize
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(spec)
        size += nbytes
    return shards + [current] if current else shards


def write_sharded_safetensors(out_dir: str, specs, tensors: Iterator, *,
                              max_shard_bytes: int) -> list[str]:
    """model.safetensors, or model-0000i-of-0000n.safetensors plus the index when too large."""
    shards = _plan_shards(specs, max_shard_bytes)
    if len(shards) <= 1:
        write_safetensors(os.path.join(out_dir, SINGLE_FILE), specs, tensors)
        return [SINGLE_FILE]
    names, weight_map, total = [], {}, 0
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        names.append(fname)
        chunk = (next(tensors) for _ in shard)
        write_safetensors(os.path.join(out_dir, fname), shard, chunk)
        for name, shape, dt in shard:
            weight_map[name] = fname
            total += int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize
    with open(os.path.join(out_dir, INDEX_FILE), "w", encoding="utf-8") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    return names + [INDEX_FILE]


def _generation_config(config: ModelConfig) -> dict:
    cfg = {"_from_model_config": True}
    if config.bos_token_id is not None:
        cfg["bos_token_id"] = config.bos_token_id
    if config.eos_token_id is not None:
        cfg["eos_token_id"] = config.eos_token_id
    return cfg


def export_hf(params: dict, config: ModelConfig, tokenizer_dir: Optional[str], out_dir: str, *,
              max_shard_bytes: int = 2 * 1024**3, dtype: str = "float32") -> str:
    """Write params as an HF directory that transformers' from_pretrained loads.

    Tokenizer files (and generation_config.json, if there) are copied from `tokenizer_dir`,
    usually the directory the model was loaded from. Returns out_dir.
    """
    np_dtype = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(jax.numpy.bfloat16)}.get(dtype)
    if np_dtype is None:
        raise ValueError(f"export dtype {dtype!r} is not supported; use 'float32' or 'bfloat16'")
    os.makedirs(out_dir, exist_ok=True)
    hf_cfg = config.to_hf_dict()
    hf_cfg["torch_dtype"] = dtype
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(hf_cfg, f, indent=2)
    specs = [(name, shape, np_dtype) for name, shape in hf_layout.hf_tensor_shapes(config, params)]
    for stale in os.listdir(out_dir):  # a previous export with another shard count
        if stale.endswith(".safetensors") or stale == INDEX_FILE:
            os.remove(os.path.join(out_dir, stale))
    write_sharded_safetensors(out_dir, specs, iter(hf_layout.iter_hf_tensors(config, params)),
                              max_shard_bytes=max_shard_bytes)
    copied = set()
    if tokenizer_dir is not None:
        for fname in TOKENIZER_FILES + ("generation_config.json",):
            src = os.path.join(tokenizer_dir, fname)
            dst = os.path.join(out_dir, fname)
            if os.path.isfile(src):
                if os.path.abspath(src) != os.path.abspath(dst):
                    shutil.copyfile(src, dst)
                copied.add(fname)
    if "generation_config.json" not in copied:
        with open(os.path.join(out_dir, "generation_config.json"), "w", encoding="utf-8") as f:
            json.dump(_generation_config(config), f, indent=2)
    return out_dir
