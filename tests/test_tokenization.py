"""Tokenizer: encode/decode, special and stop ids, chat templates with per-token message index."""
import json
import os
import shutil

import pytest

from negojax.tokenization import Tokenizer, load_tokenizer

CHAT = [
    {"role": "system", "content": "You speak for the night-shift nurses."},
    {"role": "user", "content": "The budget covers one new hire.\nWho gets it?"},
    {"role": "assistant", "content": "Could the hire rotate between both wards?"},
    {"role": "user", "content": "Only if scheduling allows: 3 shifts × 2 wards."},
]


@pytest.fixture(scope="session")
def tok(smollm_dir):
    return load_tokenizer(smollm_dir)


@pytest.mark.parametrize("messages", [CHAT, CHAT[1:2], CHAT[:3]])
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_per_message_tokens_concatenate_to_whole_text(tok, messages, add_generation_prompt):
    ids, index = tok.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
    assert ids == tok.encode(tok.render_chat(messages, add_generation_prompt))
    assert len(index) == len(ids)
    expected = list(range(len(messages))) + ([-1] if add_generation_prompt else [])
    assert sorted(set(index), key=expected.index) == expected
    assert index == sorted(index, key=expected.index)  # contiguous, in message order


def test_message_index_marks_each_message_tokens(tok):
    ids, index = tok.apply_chat_template(CHAT)
    for i, message in enumerate(CHAT):
        text = tok.decode([t for t, m in zip(ids, index) if m == i], skip_special_tokens=False)
        assert text == f"<|im_start|>{message['role']}\n{message['content']}<|im_end|>\n"
    suffix = [t for t, m in zip(ids, index) if m == -1]
    assert tok.decode(suffix, skip_special_tokens=False) == "<|im_start|>assistant\n"


def test_default_system_prompt_belongs_to_first_message(tok):
    ids, index = tok.apply_chat_template(CHAT[1:2])
    first = tok.decode([t for t, m in zip(ids, index) if m == 0], skip_special_tokens=False)
    assert first.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert first.endswith(CHAT[1]["content"] + "<|im_end|>\n")


def test_special_and_stop_ids(tok):
    assert tok.token_to_id("<|im_start|>") == 1 and tok.encode("<|im_start|>") == [1]
    assert tok.eos_id == 2 and tok.bos_id == 1 and tok.pad_id == 2
    assert tok.stop_ids == [0, 2]  # <|endoftext|> and <|im_end|>
    assert tok.decode(tok.encode("<|im_end|>hi")) == "hi"
    assert tok.vocab_size == 49152


def test_template_that_rewrites_history_is_refused(smollm_dir, tmp_path):
    model_dir = str(tmp_path / "m")
    os.makedirs(model_dir)
    shutil.copy(os.path.join(smollm_dir, "tokenizer.json"), model_dir)
    with open(os.path.join(model_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|im_end|>", "chat_template":
                   "{% for m in messages %}{% if loop.last %}LAST {% endif %}"
                   "{{ m['content'] }}{% endfor %}"}, f)
    with pytest.raises(ValueError, match="rewrites earlier messages when message 1") as e:
        Tokenizer(model_dir).apply_chat_template(CHAT[:2])
    assert "\n" not in str(e.value)


def test_sentencepiece_tokenizer_model(tmp_path):
    import sentencepiece as spm
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(["the two parties agree on a third path",
                                 "privacy and safety can both be served",
                                 "a mediator listens to every side"] * 20))
    model_dir = tmp_path / "sp"
    model_dir.mkdir()
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(model_dir / "tokenizer"),
                                   vocab_size=60, model_type="bpe", bos_id=1, eos_id=2,
                                   unk_id=0, pad_id=-1)
    with open(model_dir / "tokenizer_config.json", "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True}, f)
    tok = load_tokenizer(str(model_dir))
    ids = tok.encode("the parties agree", add_special_tokens=True)
    assert ids[0] == tok.bos_id == 1 and tok.eos_id == 2 and tok.stop_ids == [2]
    assert tok.decode(ids) == "the parties agree"
    assert tok.encode("the parties agree") == ids[1:]


def test_directory_without_tokenizer(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer.json or tokenizer.model"):
        load_tokenizer(str(tmp_path))
