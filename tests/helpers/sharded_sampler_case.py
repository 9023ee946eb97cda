"""Run under 8 fake CPU devices: greedy tokens with a (2, 2, 2) mesh equal one device's."""
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import jax  # noqa: E402

from negojax.models import transformer as tf  # noqa: E402
from negojax.models.config import ModelConfig  # noqa: E402
from negojax.parallel.mesh import make_mesh  # noqa: E402
from negojax.parallel.sharding import LogicalRules  # noqa: E402
from negojax.sampling import Session, sample  # noqa: E402

config = ModelConfig("qwen2", vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2,
                     num_heads=4, num_kv_heads=2, head_dim=8)
params = tf.init_params(config, seed=5)
prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9], [10], [11, 12], [13, 14, 15, 16, 17]]
assert len(jax.devices()) == 8
rules = LogicalRules(make_mesh(data=2, fsdp=2, tensor=2))
placed = jax.device_put(params, rules.tree_shardings(tf.param_axes(params), params))
single = sample(params, config, prompts, max_new_tokens=10)
sharded = sample(placed, config, prompts, max_new_tokens=10, rules=rules)
assert sharded.tokens == single.tokens, (sharded.tokens, single.tokens)

# Continuation under the mesh: the cache stays sharded over batch and kv heads.
session = Session(placed, config, len(prompts), rules=rules)
session.extend(prompts)
session.generate(4)
spec = session.cache["k"].sharding.spec
assert spec[1] == ("data", "fsdp") and spec[3] == "tensor", spec
print("OK", file=sys.stderr)
