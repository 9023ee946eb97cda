"""Logical-axis rules that place arrays on the (data, fsdp, tensor) mesh.

Models name their axes logically ("embed", "heads", "act_batch", ...); `LogicalRules` maps those
names onto mesh axes. A mesh axis that does not divide a dimension is dropped for that array
(replication instead of an error), so one rule table serves every model size.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

# Parameters: FSDP shards the embed dimension, Megatron-style tensor parallelism shards heads,
# MLP and vocabulary. Activations: batch over data and fsdp, the same model dims over tensor.
DEFAULT_RULES: dict[str, Any] = {
    "vocab": "tensor",
    "embed": "fsdp",
    "heads": "tensor",
    "kv_heads": "tensor",
    "mlp": "tensor",
    "head_dim": None,
    "layers": None,
    "lora_rank": None,
    "act_batch": ("data", "fsdp"),
    "act_length": None,
    "act_embed": None,
    "act_heads": "tensor",
    "act_kv_heads": "tensor",
    "act_mlp": "tensor",
    "act_vocab": "tensor",
    "cache_length": None,
}


# eq=False: hashed by identity, so `rules.constrain` can be a jit static argument.
@dataclasses.dataclass(frozen=True, eq=False)
class LogicalRules:
    mesh: Mesh
    rules: Mapping[str, Any] = dataclasses.field(default_factory=lambda: dict(DEFAULT_RULES))

    def spec(self, names: Sequence[Optional[str]], shape: Optional[Sequence[int]] = None
             ) -> PartitionSpec:
        used: set[str] = set()
        out = []
        for i, name in enumerate(names):
            target = self.rules.get(name) if name is not None else None
            axes = (target,) if isinstance(target, str) else tuple(target or ())
            kept = []
            for axis in axes:
                size = self.mesh.shape[axis]
                dim = None if shape is None else shape[i]
                divisible = dim is None or dim % (size * math.prod(
                    self.mesh.shape[a] for a in kept)) == 0
                if axis not in used and size > 1 and divisible:
                    kept.append(axis)
            used.update(kept)
            out.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
        return PartitionSpec(*out)

    def sharding(self, names, shape=None) -> NamedSharding:
        return NamedSharding(self.mesh, self.spec(names, shape))

    def constrain(self, x, names):
        return jax.lax.with_sharding_constraint(x, self.sharding(names, x.shape))

    def tree_shardings(self, axes_tree, shapes_tree):
        """Shardings for a pytree given matching trees of axis-name tuples and shapes."""
        return jax.tree.map(lambda names, x: self.sharding(names, np.shape(x)),
                            axes_tree, shapes_tree, is_leaf=lambda t: isinstance(t, tuple))

    @property
    def batch_size_multiple(self) -> int:
        return self.mesh.shape["data"] * self.mesh.shape["fsdp"]

    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())
