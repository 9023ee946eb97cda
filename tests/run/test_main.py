"""The CLI end to end: chat mode answers with the embedded default model, and the default config
(reduced to one small step) leaves every promised output in its workdir."""
import json
import os

import pytest

from trainer_runs import metrics, run_main


def test_chat_mode_prints_a_reply_and_a_rerun_compiles_nothing_new(tmp_path):
    cache = tmp_path / "xla"
    args = ("--config.mode=chat", "--config.prompt=What is the capital of France?",
            "--config.chat.max_new_tokens=16", f"--config.jax_cache_dir={cache}")
    proc = run_main("default", tmp_path, *args)
    assert "Paris" in proc.stdout, proc.stdout
    compiled = sorted(os.listdir(cache))
    assert any("prefill" in name for name in compiled), compiled
    run_main("default", tmp_path, *args)  # every program comes from the persistent cache
    assert sorted(os.listdir(cache)) == compiled


@pytest.mark.slow
def test_default_config_end_to_end_reduced(tmp_path):
    """configs/default.py with 1 step, 2 prompts x G 2, one round of 16-token turns."""
    proc = run_main("default", tmp_path, "--config.train.steps=1", "--config.rollout.group_size=2",
                    "--config.rollout.max_new_tokens=16",
                    "--config.rollout.final_max_new_tokens=16", "--config.rl.microbatches=4",
                    timeout=1500)  # a 135M training step: minutes on 2 shared CPU cores
    rows = metrics(tmp_path)
    assert list(rows) == [1]
    for key in ("reward_mean", "agreement_rate", "mean_rounds", "grad_norm", "time_rollout_s",
                "time_judge_s", "time_update_s", "rollout_tokens_per_s", "train_tokens_per_s"):
        assert rows[1][key] is not None, key
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1"]
    with open(tmp_path / "transcripts.jsonl", encoding="utf-8") as f:
        transcripts = [json.loads(line) for line in f]
    assert len(transcripts) == 4 and all("reward" in t and t["step"] == 1 for t in transcripts)
    for name in ("transcripts.html", "report.html", "report.md", "export/config.json",
                 "export/model.safetensors", "export/tokenizer.json"):
        assert os.path.exists(tmp_path / name), name
    with open(tmp_path / "export" / "config.json", encoding="utf-8") as f:
        assert json.load(f)["num_hidden_layers"] == 30  # SmolLM2-135M, exported whole
    assert "wrote:" in proc.stdout
