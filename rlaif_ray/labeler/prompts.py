"""Prompt templates for the AI labeler (RLAIF, Lee et al. 2023, arXiv 2309.00267).

A labeler prompt is ``preamble + exemplars + sample + ending`` (paper §2.1), blocks joined
by a blank line:

- **preamble**: ``"base"`` (a one-liner) or ``"detailed"`` (a paragraph of criteria) for
  one of ``TASKS``;
- **exemplars**: optional few-shot examples, each rendered exactly like the sample and
  followed by its label (and by its rationale first, when it has one);
- **sample**: the context and the response(s), introduced per task
  (``"Text - ...\\nSummary - ..."`` for summarization, ``"Conversation - ..."`` for dialogue);
- **ending**: what the labeler must answer.

Candidate-string convention (what engines tokenize and score, teacher-forced, after the
prompt — never parse sampled text):

- direct scoring ends with ``"Score (1-10):"`` (no trailing space); the answer follows a
  space, so the candidates are ``direct_candidate_strings()`` = ``(" 1", ..., " 10")``.
  The space belongs to the candidate because BPE tokenizers merge it into the number token.
- pairwise ends with ``"Preferred Response="`` (the paper's ending); the answer follows
  directly, so the candidates are ``pairwise_candidate_strings()`` = ``("1", "2")``.

Chain of thought (paper §2.1.2, two steps): ``build_cot_prompt`` ends with
``"Rationale:"``; the engine decodes a rationale, then ``append_rationale`` adds it and the
label ending, and the label candidates are scored after that as above.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

__all__ = [
    "Exemplar",
    "TaskTemplate",
    "TASKS",
    "PREAMBLES",
    "KINDS",
    "TEMPLATES",
    "DIRECT_SCORE_STRINGS",
    "PAIRWISE_LABEL_STRINGS",
    "DIRECT_ENDING",
    "PAIRWISE_ENDING",
    "RATIONALE_ENDING",
    "direct_candidate_strings",
    "pairwise_candidate_strings",
    "answer_candidates",
    "label_separator",
    "build_chat_instruction",
    "build_direct_prompt",
    "build_pairwise_prompt",
    "build_cot_prompt",
    "append_rationale",
]

TASKS = ("generic", "summarization", "helpful", "harmless")
PREAMBLES = ("base", "detailed")
KINDS = ("direct", "pairwise")

DIRECT_SCORE_STRINGS = tuple(str(i) for i in range(1, 11))  # "1" .. "10"
PAIRWISE_LABEL_STRINGS = ("1", "2")

DIRECT_ENDING = "Score (1-10):"
PAIRWISE_ENDING = "Preferred Response="
RATIONALE_ENDING = "Rationale:"


def label_separator(ending: str) -> str:
    """What comes between a prompt's last characters and the label: nothing at the very start
    of an answer or right after "=" ("Preferred Response=1"), a space after anything else
    ("Score (1-10): 7", "Score: 7"). The space belongs to the candidate string because BPE
    tokenizers merge it into (or put it before) the number."""
    return "" if not ending or ending[-1] in "=\n" else " "


def answer_candidates(kind: str, ending: str) -> tuple[str, ...]:
    """The label strings scored after a prompt that ends with `ending`: the scores 1..10
    (direct) or "1"/"2" (pairwise), each led by `label_separator(ending)`."""
    _check("kind", kind, KINDS)
    labels = DIRECT_SCORE_STRINGS if kind == "direct" else PAIRWISE_LABEL_STRINGS
    return tuple(label_separator(ending) + s for s in labels)


def direct_candidate_strings() -> tuple[str, ...]:
    """The strings to score after a direct prompt: (" 1", ..., " 10") — leading space,
    because the prompt ends with ":" and no space."""
    return answer_candidates("direct", DIRECT_ENDING)


def pairwise_candidate_strings() -> tuple[str, ...]:
    """The strings to score after a pairwise prompt: ("1", "2") — no space, because the
    prompt ends with "=" and the label follows it directly."""
    return answer_candidates("pairwise", PAIRWISE_ENDING)


@dataclass(frozen=True)
class Exemplar:
    """One few-shot example: one response for direct scoring, two for pairwise."""

    context: str
    responses: tuple[str, ...]
    label: str
    """The answer, without leading space: "7" (direct) or "2" (pairwise)."""
    rationale: str | None = None
    """Shown before the label when present (chain-of-thought exemplars)."""


@dataclass(frozen=True)
class TaskTemplate:
    """How one task phrases its preamble and introduces context and responses."""

    base_direct: str
    """One-line preamble for direct scoring."""
    base_pairwise: str
    """One-line preamble for pairwise preference."""
    criteria: str
    """Paragraph describing a good response; the detailed preamble starts with it."""
    ask_direct: str
    """Closing sentence of the detailed direct preamble."""
    ask_pairwise: str
    """Closing sentence of the detailed pairwise preamble."""
    context_name: str
    """How the context is introduced: "{context_name} - {context}"."""
    response_name: str
    """How a response is introduced: "{response_name} - ..." or "{response_name} 1 - ..."."""
    aspects: str
    """What the chain-of-thought request asks the labeler to consider."""


_DIALOGUE_CONTEXT = "Conversation"

TEMPLATES: dict[str, TaskTemplate] = {
    "generic": TaskTemplate(
        base_direct="Rate how good the response is.",
        base_pairwise="Which response is better?",
        criteria=(
            "You will be shown a prompt and a response written for it. A good response "
            "does what the prompt asks, is correct, is clear and well organised, and "
            "contains no irrelevant or made-up content."
        ),
        ask_direct="Rate the response from 1 (very poor) to 10 (excellent).",
        ask_pairwise="Decide which of the two responses is better.",
        context_name="Prompt",
        response_name="Response",
        aspects="relevance, correctness and clarity",
    ),
    "summarization": TaskTemplate(
        base_direct="Rate how good the summary of the text is.",
        base_pairwise="Which of the following summaries does a better job of summarizing the text?",
        criteria=(
            "A good summary is a shorter piece of text that conveys the essence of the "
            "original. Judge it on four points. Coherence: it reads as a clear, "
            "well-structured whole. Accuracy: everything it states is supported by the "
            "text, with no invented or distorted facts. Coverage: it keeps the important "
            "information and leaves out the minor details. Overall quality: taking all of "
            "this together, how well it would serve a reader who has not seen the text."
        ),
        ask_direct="Rate the summary from 1 (very poor) to 10 (excellent).",
        ask_pairwise="Decide which of the two summaries is better.",
        context_name="Text",
        response_name="Summary",
        aspects="coherence, accuracy, coverage, and overall quality",
    ),
    "helpful": TaskTemplate(
        base_direct="Rate how helpful the assistant's response is.",
        base_pairwise="Which response is more helpful?",
        criteria=(
            "You will be shown a conversation between a user and an AI assistant, and a "
            "candidate next reply from the assistant. A helpful reply addresses what the "
            "user actually needs, is accurate, gives enough detail without padding, is "
            "easy to follow, and stays relevant to the conversation so far."
        ),
        ask_direct="Rate the reply's helpfulness from 1 (not helpful) to 10 (extremely helpful).",
        ask_pairwise="Decide which of the two replies is more helpful.",
        context_name=_DIALOGUE_CONTEXT,
        response_name="Response",
        aspects="helpfulness, accuracy, and relevance",
    ),
    "harmless": TaskTemplate(
        base_direct="Rate how harmless the assistant's response is.",
        base_pairwise="Which response is less harmful?",
        criteria=(
            "You will be shown a conversation between a user and an AI assistant, and a "
            "candidate next reply from the assistant. A harmful reply helps with "
            "dangerous, illegal or unethical acts, is offensive, toxic or demeaning, or "
            "could otherwise hurt the user or others. A harmless reply avoids all of "
            "this, declining or redirecting when the request itself is harmful."
        ),
        ask_direct="Rate the reply from 1 (very harmful) to 10 (completely harmless).",
        ask_pairwise="Decide which of the two replies is less harmful.",
        context_name=_DIALOGUE_CONTEXT,
        response_name="Response",
        aspects="harmfulness, offensiveness, and safety",
    ),
}


def _check(name: str, value: str, valid: Sequence[str]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")


def _check_responses(kind: str, responses: Sequence[str], what: str) -> None:
    """Direct scoring shows one response, pairwise two."""
    want = 1 if kind == "direct" else 2
    if len(responses) != want:
        raise ValueError(f"{kind} {what} needs {want} response(s), got {len(responses)}")


def _template(task: str, preamble: str) -> TaskTemplate:
    _check("task", task, TASKS)
    _check("preamble", preamble, PREAMBLES)
    return TEMPLATES[task]


def _preamble(t: TaskTemplate, preamble: str, kind: str) -> str:
    if preamble == "base":
        return t.base_direct if kind == "direct" else t.base_pairwise
    return f"{t.criteria} {t.ask_direct if kind == 'direct' else t.ask_pairwise}"


def _sample(t: TaskTemplate, context: str, responses: Sequence[str]) -> str:
    lines = [f"{t.context_name} - {context}"]
    if len(responses) == 1:
        lines.append(f"{t.response_name} - {responses[0]}")
    else:
        lines += [f"{t.response_name} {i} - {r}" for i, r in enumerate(responses, 1)]
    return "\n".join(lines)


def _label_ending(kind: str) -> str:
    return DIRECT_ENDING if kind == "direct" else PAIRWISE_ENDING


def _answered(ending: str, label: str) -> str:
    # Same spacing as the candidates: " 7" after ":", "2" right after "=".
    return f"{ending}{label_separator(ending)}{label}"


def _exemplar(t: TaskTemplate, ex: Exemplar, kind: str, ending: str | None = None) -> str:
    _check_responses(kind, ex.responses, "exemplar")
    answer = _answered(_label_ending(kind) if ending is None else ending, ex.label)
    if ex.rationale is not None:
        answer = f"{RATIONALE_ENDING} {ex.rationale.strip()}\n{answer}"
    return f"{_sample(t, ex.context, ex.responses)}\n\n{answer}"


def _build(
    context: str,
    responses: Sequence[str],
    kind: str,
    task: str,
    preamble: str,
    exemplars: Sequence[Exemplar],
    ending: str,
) -> str:
    t = _template(task, preamble)
    blocks = [_preamble(t, preamble, kind)]
    blocks += [_exemplar(t, ex, kind) for ex in exemplars]
    blocks += [_sample(t, context, responses), ending]
    return "\n\n".join(blocks)


def build_direct_prompt(
    context: str,
    response: str,
    *,
    task: str = "generic",
    preamble: str = "base",
    exemplars: Sequence[Exemplar] = (),
) -> str:
    """Direct-scoring prompt ending exactly with "Score (1-10):"; score
    ``direct_candidate_strings()`` after it.

    Generic base for context "C", response "R":
    "Rate how good the response is.\\n\\nPrompt - C\\nResponse - R\\n\\nScore (1-10):".
    """
    return _build(context, (response,), "direct", task, preamble, exemplars, DIRECT_ENDING)


def build_pairwise_prompt(
    context: str,
    response_a: str,
    response_b: str,
    *,
    task: str = "generic",
    preamble: str = "base",
    exemplars: Sequence[Exemplar] = (),
) -> str:
    """Pairwise prompt (response_a shown as 1, response_b as 2) ending exactly with
    "Preferred Response="; score ``pairwise_candidate_strings()`` after it."""
    return _build(
        context, (response_a, response_b), "pairwise", task, preamble, exemplars, PAIRWISE_ENDING
    )


def build_cot_prompt(
    context: str,
    *responses: str,
    kind: str = "direct",
    task: str = "generic",
    preamble: str = "base",
    exemplars: Sequence[Exemplar] = (),
) -> str:
    """Step 1 of two-step chain of thought: the prompt with, instead of the label ending, a
    request to explain, ending exactly with "Rationale:". Pass one response for
    ``kind="direct"``, two (shown as 1 and 2) for ``kind="pairwise"``. Decode the rationale
    from it, then call ``append_rationale``."""
    _check("kind", kind, KINDS)
    _check_responses(kind, responses, "chain of thought")
    t = _template(task, preamble)
    noun = t.response_name.lower()
    if kind == "direct":
        ask = f"Consider the {t.aspects} of the {noun} and explain how good it is."
    else:
        ask = f"Consider the {t.aspects} of each {noun} and explain which one is better."
    ending = f"{ask}\n\n{RATIONALE_ENDING}"
    return _build(context, responses, kind, task, preamble, exemplars, ending)


def append_rationale(cot_prompt: str, rationale: str, kind: str = "direct", ending: str | None = None) -> str:
    """Step 2 of chain of thought: ``cot_prompt + " " + rationale.strip() + "\\n" + ending``,
    ending being "Score (1-10):" or "Preferred Response=" per ``kind`` (or the chat
    labeler's answer prefix); the label candidates are then scored after it exactly as for
    the plain prompts."""
    _check("kind", kind, KINDS)
    if not cot_prompt.endswith(RATIONALE_ENDING):
        raise ValueError(f"cot_prompt must end with {RATIONALE_ENDING!r} (from build_cot_prompt)")
    return f"{cot_prompt} {rationale.strip()}\n{_label_ending(kind) if ending is None else ending}"


# --------------------------------------------------------------------------- chat labelers

CHAT_ASK = {
    "direct": "Reply with the score only: one whole number from 1 to 10.",
    "pairwise": "Reply with the number of the better {noun} only: 1 or 2.",
}


def build_chat_instruction(
    context: str,
    *responses: str,
    kind: str = "direct",
    task: str = "generic",
    preamble: str = "base",
    exemplars: Sequence[Exemplar] = (),
    answer_prefix: str = "",
    chain_of_thought: bool = False,
) -> str:
    """The user turn of a chat labeler: preamble, exemplars (answered with ``answer_prefix``),
    the sample, then a request saying how to answer. The caller puts it in the labeler's chat
    template and opens the assistant turn with ``answer_prefix`` (or "Rationale:" for chain
    of thought), where the label candidates are scored."""
    _check("kind", kind, KINDS)
    _check_responses(kind, responses, "prompt")
    t = _template(task, preamble)
    noun = t.response_name.lower()
    ask = CHAT_ASK[kind].format(noun=noun)
    if chain_of_thought:
        what = "the score" if kind == "direct" else "the number of the better " + noun
        consider = f"Consider the {t.aspects} of {'the' if kind == 'direct' else 'each'} {noun}."
        shown = f'"{answer_prefix}"' if answer_prefix else "a new line"
        ask = f'{consider} Start your reply with "{RATIONALE_ENDING}" and your reasoning, then give {what} after {shown}.'
    blocks = [_preamble(t, preamble, kind)]
    blocks += [_exemplar(t, ex, kind, answer_prefix) for ex in exemplars]
    blocks += [_sample(t, context, responses), ask]
    return "\n\n".join(blocks)
