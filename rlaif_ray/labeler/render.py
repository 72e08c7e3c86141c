"""The labeler's prompts for one run: the paper's plain-text format or a chat conversation.

`LabelerPrompts` is what the labeler actor and the label job's length check both use, so
the prompt that is measured is the prompt that is scored. It needs only the labeler's
tokenizer (for its chat template); no engine, no Ray.

    plain  (labeler.chat_template: false)   "…preamble…\\n\\n…sample…\\n\\nScore (1-10):" + " 7"
    chat   (labeler.chat_template: true)    template([user: preamble, exemplars, sample, request])
                                             + "Score:"  (the assistant turn's start) + " 7"

Token ids: plain prompts get the tokenizer's special tokens (bos); chat prompts already hold
them in the rendered template, so none are added again.
"""

from __future__ import annotations

from rlaif_ray.config import ConfigError, LabelerSection
from rlaif_ray.labeler.prompts import (
    DIRECT_ENDING, PAIRWISE_ENDING, RATIONALE_ENDING, Exemplar, answer_candidates, append_rationale,
    build_chat_instruction, build_cot_prompt, build_direct_prompt, build_pairwise_prompt,
)


class LabelerPrompts:
    def __init__(self, cfg: LabelerSection, tokenizer, model_name: str):
        if cfg.chat_template and not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"labeler.chat_template: the tokenizer of {model_name} has no chat template; "
                              f"set labeler.chat_template: false or use a chat labeler")
        self.cfg, self.tokenizer = cfg, tokenizer
        self.exemplars = tuple(
            Exemplar(context=e["context"], responses=tuple(e["responses"]), label=str(e["label"]),
                     rationale=e.get("rationale")) for e in cfg.few_shot)

    def ending(self, kind: str) -> str:
        """What the label follows: the plain format's last line or the chat answer prefix."""
        if self.cfg.chat_template:
            return self.cfg.direct_answer_prefix if kind == "direct" else self.cfg.pairwise_answer_prefix
        return DIRECT_ENDING if kind == "direct" else PAIRWISE_ENDING

    def candidates(self, kind: str) -> tuple[str, ...]:
        """The label strings scored teacher-forced after `prompt(...)` (or `with_rationale`)."""
        return answer_candidates(kind, self.ending(kind))

    def prompt(self, context: str, *responses: str, kind: str) -> str:
        """The text the candidates are scored after; with chain of thought, the text a
        rationale is decoded from (it ends with "Rationale:")."""
        kw = dict(task=self.cfg.task, preamble=self.cfg.preamble, exemplars=self.exemplars)
        cot = self.cfg.chain_of_thought
        if not self.cfg.chat_template:
            if cot:
                return build_cot_prompt(context, *responses, kind=kind, **kw)
            if kind == "direct":
                return build_direct_prompt(context, *responses, **kw)
            return build_pairwise_prompt(context, *responses, **kw)
        user = build_chat_instruction(context, *responses, kind=kind, answer_prefix=self.ending(kind),
                                      chain_of_thought=cot, **kw)
        opened = self.tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                                    add_generation_prompt=True)
        return opened + (RATIONALE_ENDING if cot else self.ending(kind))

    def with_rationale(self, cot_prompt: str, rationale: str, kind: str) -> str:
        """Chain of thought, step 2: the decoded rationale, then the label's ending."""
        return append_rationale(cot_prompt, rationale, kind=kind, ending=self.ending(kind))

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), add_special_tokens=not self.cfg.chat_template)["input_ids"]

    def encode_candidate(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


def labeler_context_tokens(labeler: LabelerSection, text_tokens: int) -> int:
    """The labeler engine's context: `text_tokens` for what it judges (a prompt and its
    response(s), as each verb sizes them) plus room for preamble, exemplars, rationale,
    label and (chat) the template's markers:

        512 + 256·(few-shot exemplars) + text_tokens (+ labeler.rationale_max_tokens with chain of thought)
    """
    budget = 512 + 256 * len(labeler.few_shot) + text_tokens
    if labeler.chain_of_thought:
        budget += labeler.rationale_max_tokens
    return budget
