"""The method's configs run end to end on CPU in miniature: configs/tpu_v4.py, tpu_v4_8.py,
gpu_80gb.py and gpu_h100.py as shipped, with only the model (Qwen3's architecture at tiny size, with
Qwen3's real tokenizer and published template) and the mesh (8 fake CPU devices, fsdp 4 x
tensor 2) replaced, plus what a laptop cannot reach: GCS (workdir), W&B, the judge's endpoint
(a local OpenAI-compatible server) and the pod coordinator. One step each, without warm-up:
later steps run the same programs, which the multi-step runs of the tiny config cover.
tpu_v4 and gpu_h100 run their rollout as shipped (LoRA r64 on a bf16 base, 7 turns with 2 of
context, G = 8 over 16 and 8 prompts, thinking off). tpu_v4_8 and gpu_80gb are tpu_v4 with a
4-bit base, more microbatches and remat, which is what their step adds: they roll out 8 prompts
for 3 turns, the rest as shipped."""
import json
import subprocess

import pytest

from chat_families import FAMILIES, write_tokenizer_dir
from miniature import fake_devices_env, miniature_flags, stop_prone_checkpoint
from openai_server import start_server, stop_server, varied_judge
from shipped_configs import shipped_config
from trainer_runs import REPO, env, main_args, metrics

PRESETS = {"tpu_v4": "qwen3-14b", "tpu_v4_8": "qwen3-14b", "gpu_80gb": "qwen3-14b",
           "gpu_h100": "qwen3-1.7b"}
# The rollout of tpu_v4's derived configs, cut down: tpu_v4 runs it in full.
DERIVED_ROLLOUT = {"prompts_per_step": 8, "max_turns": 3}
ROLLOUT = {"tpu_v4": {}, "tpu_v4_8": DERIVED_ROLLOUT, "gpu_80gb": DERIVED_ROLLOUT, "gpu_h100": {}}


@pytest.fixture(scope="module")
def qwen3_tokenizer(tmp_path_factory):
    return write_tokenizer_dir(FAMILIES["qwen3"], str(tmp_path_factory.mktemp("qwen3-tok")))


@pytest.mark.slow  # tpu_v4: 128 dialogues of 7 turns, on 8 fake devices: minutes on 2 CPU cores
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_method_config_trains_a_step_in_miniature(name, qwen3_tokenizer, tmp_path):
    model = stop_prone_checkpoint(PRESETS[name], qwen3_tokenizer, str(tmp_path / "model"),
                                  "<|im_end|>")
    server = start_server(varied_judge)
    try:
        proc = subprocess.run(main_args(name, tmp_path / "run",
                                        *miniature_flags(model, server.url),
                                        *(f"--config.rollout.{k}={v}"
                                          for k, v in ROLLOUT[name].items())),
                              cwd=REPO, env=env(**fake_devices_env()), capture_output=True,
                              text=True, timeout=1800)
    finally:
        stop_server(server)
    assert proc.returncode == 0, proc.stderr[-4000:]
    shipped = shipped_config(name)
    rows = metrics(tmp_path / "run")
    assert sorted(rows) == [1]
    for row in rows.values():
        assert row["skipped_updates"] == 0 and row["judge_failures"] == 0
        assert row["judge_calls"] > 0
        if shipped.judge.kind == "http":  # tpu_v4: the served judge above
            assert row["grad_norm"] > 0 and row["reward_std"] > 0
        # gpu_h100 judges with the policy itself: the tiny model never finds agreement, so its
        # dialogues all run 7 turns without a reward (the update is computed, and is zero).
    with open(tmp_path / "run" / "transcripts.jsonl", encoding="utf-8") as f:
        dialogues = [json.loads(line) for line in f]
    assert shipped.rollout.max_turns == 7
    rollout = {**shipped.rollout.to_dict(), **ROLLOUT[name]}
    assert len(dialogues) == rollout["prompts_per_step"] * rollout["group_size"]
    lengths = {len(d["turns"]) for d in dialogues}
    assert max(lengths) == rollout["max_turns"]
    if shipped.judge.kind == "http":
        assert min(lengths) < rollout["max_turns"]  # some dialogues agreed early
