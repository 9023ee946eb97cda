"""Under QLoRA a run holds one quantised base: the full-precision weights are released once
quantised, and the train step, the rollouts (policy and opponent), the reference and a local
"policy" judge all read the same arrays, before and after an update."""
import gc

import jax
import numpy as np
import pytest

from negojax.models import lora
from negojax.models.transformer import param_shapes
from negojax.run.build import build_training, make_judge
from negojax.run.train import Trainer
from shipped_configs import shipped_config


def tiny_run(tmp_path, base_dtype: str):
    config = shipped_config("tiny_test")
    with config.unlocked():
        config.workdir = str(tmp_path)
        config.lora.update(rank=4, base_dtype=base_dtype)
    return build_training(config, {"data": 1, "fsdp": 1, "tensor": 1})


def ids(tree) -> set:
    return {id(x) for x in jax.tree.leaves(tree)}


@pytest.mark.parametrize("base_dtype", ["nf4", "int8"])
def test_one_quantised_base_serves_step_rollouts_and_judge(tmp_path, base_dtype):
    run = tiny_run(tmp_path, base_dtype)
    dense = {tuple(param_shapes(run.model_config)["layers"][n]) for n in lora.DEFAULT_TARGETS}

    def live():
        gc.collect()
        arrays = [x for x in jax.live_arrays() if not x.is_deleted()]
        return ([x for x in arrays if x.shape in dense and np.issubdtype(x.dtype, np.floating)],
                [x for x in arrays if x.dtype in (np.uint8, np.int8)])

    full, codes = live()
    assert not full, [x.shape for x in full]  # no float32 projection survives quantisation
    assert len(codes) == len(lora.DEFAULT_TARGETS)  # one quantised copy of each
    assert ids(run.policy.params) == ids(run.frozen) == ids(run.judge.params)

    trainer = Trainer(run)
    assert ids(trainer.state["frozen"]) == ids(run.frozen)
    trainer.train_step(1)  # a rollout, the judge, an update
    assert ids(trainer.state["frozen"]) == ids(run.frozen)
    assert not any(x.is_deleted() for x in jax.tree.leaves(run.frozen))
    full, codes = live()
    assert not full and len(codes) == len(lora.DEFAULT_TARGETS)


def test_a_local_judge_of_the_policys_own_checkpoint_is_its_weights(tmp_path):
    """judge.path naming model.path (weights as loaded: no random init, no overrides) judges
    with the policy's arrays rather than loading the checkpoint a second time."""
    run = tiny_run(tmp_path, "nf4")
    config = shipped_config("tiny_test")
    with config.unlocked():
        config.model.random_init = False
        config.model.overrides = {}
        config.judge.path = config.model.path
    assert ids(make_judge(config, run.policy).params) == ids(run.frozen)
