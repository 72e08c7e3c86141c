"""Policy prompt formatting: plain text, chat template, system prompt, truncation, bad records."""

from __future__ import annotations

import pytest

from rlaif_ray.config import ConfigError
from rlaif_ray.prompts import PromptFormatError, PromptFormatter, display_text, validate_record

# A small chat template in the common shape: role markers, then the assistant turn opened.
TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


@pytest.fixture(scope="module")
def tok(tiny_models):
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(tiny_models["policy"])
    t.chat_template = TEMPLATE
    return t


@pytest.fixture(scope="module")
def plain_tok(tiny_models):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_models["policy"])


def _rendered(tok, messages):
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tok(text, add_special_tokens=False)["input_ids"]


def test_plain_text_is_the_tokenizers_ids(plain_tok):
    fmt = PromptFormatter(plain_tok, chat_template=False, system_prompt=None, model_name="tiny")
    enc = fmt.encode("the cat sat on the mat", 64)
    assert enc.token_ids == plain_tok("the cat sat on the mat")["input_ids"] and not enc.truncated


def test_plain_truncation_keeps_bos_and_the_end(plain_tok):
    fmt = PromptFormatter(plain_tok, chat_template=False, system_prompt=None, model_name="tiny")
    full = plain_tok("one two three four five six seven eight")["input_ids"]
    assert full[0] == plain_tok.bos_token_id
    enc = fmt.encode("one two three four five six seven eight", 4)
    assert enc.truncated and enc.token_ids == [full[0]] + full[-3:]
    assert fmt.encode("one two three four five six seven eight", 4, truncate=False) is None


def test_chat_wraps_with_the_template_and_opens_the_assistant_turn(tok):
    fmt = PromptFormatter(tok, chat_template=True, system_prompt=None, model_name="tiny")
    enc = fmt.encode("what is two plus two", 256)
    assert enc.token_ids == _rendered(tok, [{"role": "user", "content": "what is two plus two"}])
    text = tok.decode(enc.token_ids)
    assert "<|user|>" in text and text.rstrip().endswith("<|assistant|>")
    assert enc.token_ids.count(tok.bos_token_id) == 1  # the template's bos only, not a second one


def test_system_prompt_goes_first_unless_the_record_has_its_own(tok):
    fmt = PromptFormatter(tok, chat_template=True, system_prompt="be brief", model_name="tiny")
    want = _rendered(tok, [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    assert fmt.encode("hi", 256).token_ids == want
    own = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hi"}]
    assert fmt.encode(own, 256).token_ids == _rendered(tok, own)


def test_chat_messages_records_go_through_the_same_template(tok):
    fmt = PromptFormatter(tok, chat_template=True, system_prompt=None, model_name="tiny")
    convo = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
             {"role": "user", "content": "tell me a story"}]
    assert fmt.encode(convo, 256).token_ids == _rendered(tok, convo)
    assert display_text(convo) == "User: hi\n\nAssistant: hello\n\nUser: tell me a story"
    assert display_text([{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]) == "q"


def test_chat_truncation_shortens_the_user_content_and_keeps_the_template(tok):
    fmt = PromptFormatter(tok, chat_template=True, system_prompt="be brief", model_name="tiny")
    words = " ".join(f"word{i}" for i in range(200))
    full = fmt.encode(words, 10_000).token_ids
    limit = len(full) // 3
    enc = fmt.encode(words, limit)
    assert enc.truncated and len(enc.token_ids) <= limit
    text = tok.decode(enc.token_ids)
    # Template intact: system turn, user marker, opened assistant turn; the question's end kept.
    assert text.count("<|system|>") == 1 and "be brief" in text and "<|user|>" in text
    assert text.rstrip().endswith("<|assistant|>") and "word199" in text and "word0 " not in text
    assert fmt.encode(words, limit, truncate=False) is None
    assert fmt.encode(words, fmt.floor(words) - 1) is None  # not even the template fits


def test_chat_template_missing_is_a_config_error_naming_the_model(plain_tok):
    with pytest.raises(ConfigError, match=r"data.chat_template: the tokenizer of my/model has no chat template"):
        PromptFormatter(plain_tok, chat_template=True, system_prompt=None, model_name="my/model")
    with pytest.raises(ConfigError, match=r"data.system_prompt: a system prompt needs data.chat_template: true"):
        PromptFormatter(plain_tok, chat_template=False, system_prompt="x", model_name="my/model")


def test_messages_need_the_chat_template(plain_tok):
    fmt = PromptFormatter(plain_tok, chat_template=False, system_prompt=None, model_name="tiny")
    with pytest.raises(PromptFormatError, match="set data.chat_template: true"):
        fmt.encode([{"role": "user", "content": "hi"}], 64)


@pytest.mark.parametrize("record,match", [
    ("  ", "empty prompt"),
    (7, "must be text or a list of"),
    ([{"role": "user"}], r"message 0 must be \{role"),
    ([{"role": "robot", "content": "x"}], r"message 0 must be \{role"),
    ([{"role": "system", "content": "x"}], "needs at least one user message"),
])
def test_bad_records_name_the_record(record, match):
    with pytest.raises(PromptFormatError, match=rf"^prompts.jsonl record 3: .*{match}"):
        validate_record(record, "prompts.jsonl record 3")



def test_run_stream_formats_with_the_real_chat_template(smollm2, repo_root):
    """configs/smollm2-cpu.yaml's stream: SmolLM2's own template, the config's system prompt."""
    from transformers import AutoTokenizer

    from rlaif_ray.config import load_config
    from rlaif_ray.data import prompt_stream

    cfg = load_config(repo_root / "configs" / "smollm2-cpu.yaml",
                      [f"model.policy={smollm2}", f"data.source={repo_root / 'configs/data/everyday-questions.jsonl'}"])
    tok = AutoTokenizer.from_pretrained(smollm2)
    stream = prompt_stream(cfg.data, tok, cfg.model.policy, seed=0)
    p = stream.take(1)[0]
    messages = [{"role": "system", "content": cfg.data.system_prompt}, {"role": "user", "content": p.text}]
    assert p.token_ids == tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert tok.decode(p.token_ids).endswith("<|im_end|>\n<|im_start|>assistant\n")
