"""Tokenizer: encode/decode, special and stop ids, chat templates, enable_thinking."""
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
def test_chat_ids_tokenise_the_whole_rendering(tok, messages, add_generation_prompt):
    ids = tok.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
    text = tok.render_chat(messages, add_generation_prompt)
    assert ids == tok.encode(text)
    assert text.endswith("<|im_start|>assistant\n" if add_generation_prompt else "<|im_end|>\n")


def test_default_system_prompt_of_the_template(tok):
    text = tok.render_chat(CHAT[1:2])
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_special_and_stop_ids(tok):
    assert tok.token_to_id("<|im_start|>") == 1 and tok.encode("<|im_start|>") == [1]
    assert tok.eos_id == 2 and tok.bos_id == 1 and tok.pad_id == 2
    assert tok.stop_ids == [0, 2]  # <|endoftext|> and <|im_end|>
    assert tok.decode(tok.encode("<|im_end|>hi")) == "hi"
    assert tok.vocab_size == 49152


def _tokenizer_dir(smollm_dir, path, config):
    os.makedirs(path)
    shutil.copy(os.path.join(smollm_dir, "tokenizer.json"), path)
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|im_end|>", **config}, f)
    return str(path)


def test_template_that_rewrites_history_renders(smollm_dir, tmp_path):
    """Any template renders, including one whose earlier messages change once a later one
    follows; nothing assumes one rendering extends another."""
    model_dir = _tokenizer_dir(smollm_dir, tmp_path / "m", {"chat_template":
                               "{% for m in messages %}{% if loop.last %}LAST {% endif %}"
                               "{{ m['content'] }} {% endfor %}"})
    tok = Tokenizer(model_dir)
    assert tok.render_chat(CHAT[:2]) == f"{CHAT[0]['content']} LAST {CHAT[1]['content']} "
    assert tok.apply_chat_template(CHAT[:2]) == tok.encode(tok.render_chat(CHAT[:2]))


def test_thinking_reaches_the_template_as_enable_thinking(smollm_dir, tmp_path):
    model_dir = _tokenizer_dir(smollm_dir, tmp_path / "m", {"chat_template":
                               "{% if enable_thinking is defined and enable_thinking is false %}"
                               "off{% else %}on{% endif %}"})
    assert Tokenizer(model_dir).render_chat(CHAT) == "off"
    assert Tokenizer(model_dir, thinking=True).render_chat(CHAT) == "on"


def test_missing_chat_template_names_the_fix(smollm_dir, tmp_path):
    model_dir = _tokenizer_dir(smollm_dir, tmp_path / "m", {})
    with pytest.raises(ValueError, match="no chat template; add `chat_template` to "
                       "tokenizer_config.json or a chat_template.jinja file, or set "
                       "model.chat_template") as e:
        Tokenizer(model_dir).apply_chat_template(CHAT)
    assert "\n" not in str(e.value)
    template = tmp_path / "t.jinja"
    template.write_text("{{ messages[0]['content'] }}")
    assert Tokenizer(model_dir, chat_template=str(template)).render_chat(CHAT) == CHAT[0]["content"]
    with pytest.raises(FileNotFoundError, match="cannot read the chat template file"):
        Tokenizer(model_dir, chat_template=str(tmp_path / "absent.jinja"))


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
