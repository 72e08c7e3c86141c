"""Prompt builders: layout, endings, candidate conventions, chain of thought, validation."""

import pytest

from rlaif_ray.labeler import (
    DIRECT_SCORE_STRINGS,
    PAIRWISE_LABEL_STRINGS,
    TASKS,
    Exemplar,
    append_rationale,
    build_cot_prompt,
    build_direct_prompt,
    build_pairwise_prompt,
    direct_candidate_strings,
    pairwise_candidate_strings,
)
from rlaif_ray.labeler.prompts import TEMPLATES


def test_generic_base_direct_prompt_is_exact_and_short():
    assert build_direct_prompt("C", "R") == (
        "Rate how good the response is.\n\nPrompt - C\nResponse - R\n\nScore (1-10):"
    )


def test_candidate_strings_convention():
    assert DIRECT_SCORE_STRINGS == tuple(str(i) for i in range(1, 11))
    assert direct_candidate_strings() == tuple(f" {i}" for i in range(1, 11))
    assert PAIRWISE_LABEL_STRINGS == ("1", "2")
    assert pairwise_candidate_strings() == ("1", "2")


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("preamble", ["base", "detailed"])
def test_every_task_and_preamble_builds(task, preamble):
    d = build_direct_prompt("ctx", "resp", task=task, preamble=preamble)
    p = build_pairwise_prompt("ctx", "ra", "rb", task=task, preamble=preamble)
    assert d.endswith("\n\nScore (1-10):")
    assert p.endswith("\n\nPreferred Response=")
    t = TEMPLATES[task]
    assert f"{t.context_name} - ctx\n{t.response_name} - resp" in d
    assert f"{t.response_name} 1 - ra\n{t.response_name} 2 - rb" in p


def test_task_introductions():
    s = build_direct_prompt("the text", "the summary", task="summarization")
    assert "Text - the text\nSummary - the summary" in s
    h = build_pairwise_prompt("Human: hi", "a", "b", task="harmless")
    assert h.startswith("Which response is less harmful?")
    assert "Conversation - Human: hi\nResponse 1 - a\nResponse 2 - b" in h


def test_detailed_differs_from_base_and_starts_with_preamble():
    base = build_direct_prompt("C", "R", task="summarization")
    det = build_direct_prompt("C", "R", task="summarization", preamble="detailed")
    assert base != det and len(det) > len(base)
    assert base.startswith("Rate how good the summary of the text is.\n\n")
    for word in ("Coherence", "Accuracy", "Coverage", "Overall quality"):
        assert word in det
    # Same sample and ending after the preamble.
    assert det.endswith(base.split("\n\n", 1)[1])


def test_exemplars_rendered_before_sample_with_label_and_rationale():
    ex1 = Exemplar("c1", ("r1",), "7")
    ex2 = Exemplar("c2", ("r2",), "3", rationale="Off topic.")
    s = build_direct_prompt("C", "R", exemplars=[ex1, ex2])
    assert s == (
        "Rate how good the response is.\n\n"
        "Prompt - c1\nResponse - r1\n\nScore (1-10): 7\n\n"
        "Prompt - c2\nResponse - r2\n\nRationale: Off topic.\nScore (1-10): 3\n\n"
        "Prompt - C\nResponse - R\n\nScore (1-10):"
    )
    pex = Exemplar("c", ("a", "b"), "2")
    p = build_pairwise_prompt("C", "A", "B", exemplars=[pex])
    # Pairwise label follows "=" with no space, like the candidates.
    assert "Response 2 - b\n\nPreferred Response=2\n\nPrompt - C" in p


def test_exemplar_response_count_checked():
    with pytest.raises(ValueError, match="2 response"):
        build_pairwise_prompt("C", "A", "B", exemplars=[Exemplar("c", ("a",), "1")])


def test_cot_two_steps_direct_and_pairwise():
    step1 = build_cot_prompt("C", "R", kind="direct", task="summarization")
    assert step1.endswith("explain how good it is.\n\nRationale:")
    assert "Text - C\nSummary - R" in step1
    assert "Score (1-10)" not in step1
    step2 = append_rationale(step1, "  Accurate but long. \n", "direct")
    assert step2 == step1 + " Accurate but long.\nScore (1-10):"

    p1 = build_cot_prompt("C", "A", "B", kind="pairwise", task="summarization")
    assert p1.endswith("of each summary and explain which one is better.\n\nRationale:")
    p2 = append_rationale(p1, "Summary 2 is more accurate.", "pairwise")
    assert p2.endswith("Rationale: Summary 2 is more accurate.\nPreferred Response=")


def test_cot_checks():
    with pytest.raises(ValueError, match="2 response"):
        build_cot_prompt("C", "A", kind="pairwise")
    with pytest.raises(ValueError, match="must end with"):
        append_rationale("no rationale request", "x", "direct")


@pytest.mark.parametrize(
    "call, bad",
    [
        (lambda: build_direct_prompt("C", "R", task="poetry"), "'poetry'"),
        (lambda: build_pairwise_prompt("C", "A", "B", preamble="fancy"), "'fancy'"),
        (lambda: build_cot_prompt("C", "R", kind="listwise"), "'listwise'"),
        (lambda: append_rationale("Rationale:", "x", kind="both"), "'both'"),
    ],
)
def test_bad_names_raise_with_valid_choices(call, bad):
    with pytest.raises(ValueError) as err:
        call()
    msg = str(err.value)
    assert bad in msg and "valid:" in msg
