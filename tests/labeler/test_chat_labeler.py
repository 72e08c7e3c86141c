"""Chat labelers: the instruction in a user turn, the label read after the assistant's answer prefix."""

from __future__ import annotations

import pytest

from rlaif_ray.config import ConfigError, LabelerSection
from rlaif_ray.labeler import build_direct_prompt, build_pairwise_prompt
from rlaif_ray.labeler.prompts import answer_candidates, build_chat_instruction, label_separator
from rlaif_ray.labeler.render import LabelerPrompts

TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def tok(tiny_models):
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(tiny_models["labeler"])
    t.chat_template = TEMPLATE
    return t


def test_separator_follows_the_ending():
    assert label_separator("Score (1-10):") == " " and label_separator("Score:") == " "
    assert label_separator("Preferred Response=") == "" and label_separator("") == ""
    assert label_separator("Rationale: because\n") == ""
    assert answer_candidates("direct", "Score:") == tuple(f" {i}" for i in range(1, 11))
    assert answer_candidates("direct", "") == tuple(str(i) for i in range(1, 11))
    assert answer_candidates("pairwise", "Preferred Response=") == ("1", "2")
    assert answer_candidates("pairwise", "Answer:") == (" 1", " 2")


def test_chat_instruction_holds_preamble_sample_and_request():
    text = build_chat_instruction("C", "R", kind="direct", answer_prefix="Score:")
    assert text == ("Rate how good the response is.\n\nPrompt - C\nResponse - R\n\n"
                    "Reply with the score only: one whole number from 1 to 10.")
    pair = build_chat_instruction("C", "A", "B", kind="pairwise", answer_prefix="Preferred Response=")
    assert pair.endswith("Response 1 - A\nResponse 2 - B\n\nReply with the number of the better response only: 1 or 2.")
    cot = build_chat_instruction("C", "R", kind="direct", answer_prefix="Score:", chain_of_thought=True)
    assert cot.endswith('Start your reply with "Rationale:" and your reasoning, then give the score after "Score:".')


def test_exemplars_are_answered_with_the_prefix():
    from rlaif_ray.labeler import Exemplar

    text = build_chat_instruction("C", "R", kind="direct", answer_prefix="Score:",
                                  exemplars=[Exemplar("c0", ("r0",), "7")])
    assert "Prompt - c0\nResponse - r0\n\nScore: 7\n\nPrompt - C" in text


def test_chat_prompt_puts_the_instruction_in_a_user_turn(tok):
    lp = LabelerPrompts(LabelerSection(chat_template=True), tok, "tiny-labeler")
    text = lp.prompt("C", "R", kind="direct")
    user = build_chat_instruction("C", "R", kind="direct", answer_prefix="Score:")
    assert text == f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\nScore:"
    assert lp.candidates("direct")[0] == " 1" and lp.candidates("pairwise") == ("1", "2")
    assert lp.encode(text) == tok(text, add_special_tokens=False)["input_ids"]  # no second bos
    pair = lp.prompt("C", "A", "B", kind="pairwise")
    assert pair.endswith("<|im_start|>assistant\nPreferred Response=")


def test_chat_chain_of_thought_decodes_then_answers_after_the_prefix(tok):
    lp = LabelerPrompts(LabelerSection(chat_template=True, chain_of_thought=True, direct_answer_prefix=""), tok, "m")
    cot = lp.prompt("C", "R", kind="direct")
    assert cot.endswith("<|im_start|>assistant\nRationale:")
    assert lp.with_rationale(cot, " it is fine ", "direct") == cot + " it is fine\n"
    assert lp.candidates("direct") == tuple(str(i) for i in range(1, 11))  # right after the newline


def test_plain_labeler_is_unchanged(tok):
    lp = LabelerPrompts(LabelerSection(), tok, "tiny-labeler")
    assert lp.prompt("C", "R", kind="direct") == build_direct_prompt("C", "R")
    assert lp.prompt("C", "A", "B", kind="pairwise") == build_pairwise_prompt("C", "A", "B")
    assert lp.candidates("direct") == tuple(f" {i}" for i in range(1, 11))
    assert lp.encode("x") == tok("x")["input_ids"]


def test_chat_labeler_without_template_is_refused(tiny_models):
    from transformers import AutoTokenizer

    plain = AutoTokenizer.from_pretrained(tiny_models["labeler"])
    with pytest.raises(ConfigError, match="labeler.chat_template: the tokenizer of my/judge has no chat template"):
        LabelerPrompts(LabelerSection(chat_template=True), plain, "my/judge")


def test_prefix_with_trailing_space_is_refused():
    with pytest.raises(ValueError, match="direct_answer_prefix: must not end with whitespace"):
        LabelerSection(direct_answer_prefix="Score: ")
