"""Policy prompts as users have them: plain text or chat messages, one formatting function.

Every verb that feeds prompts to the policy (train, eval, rejection sampling, DPO) turns a
dataset record into token ids through `PromptFormatter.encode`, so the policy sees the same
format in training, evaluation and preference tuning:

- plain text, `chat_template: false`: the tokenizer's ids with its special tokens (bos);
- `chat_template: true`: `[system?] + messages`, rendered by the policy tokenizer's chat
  template with the assistant's turn opened (`add_generation_prompt`), then tokenized
  without adding special tokens again (the template already holds them);
- a record that is a list of `{role, content}` messages (the common HF chat format) is
  always rendered by the chat template, so it needs `chat_template: true`.

Length limits count the rendered tokens. A prompt over the limit is dropped, or truncated:
plain text keeps its end (the part nearest the answer); chat keeps the template intact and
shortens the *content of the last user message* from its start, so the template's markers
and the question's end survive.

What the labeler sees of a prompt is `display_text`: the text itself, a single user turn's
content, or "User: …\\n\\nAssistant: …" lines for a conversation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from rlaif_ray.config import ConfigError
from rlaif_ray.errors import PromptFormatError

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}
PromptRecord = Union[str, list]  # plain text, or a list of Message

ROLES = ("system", "user", "assistant")


def validate_record(record, where: str) -> PromptRecord:
    """The record itself if it is non-empty text or a well-formed message list; otherwise a
    `PromptFormatError` naming `where` (e.g. "prompts.jsonl record 7")."""
    if isinstance(record, str):
        if not record.strip():
            raise PromptFormatError(f"{where}: empty prompt")
        return record
    if isinstance(record, (list, tuple)) and record:
        for k, m in enumerate(record):
            if not (isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)):
                raise PromptFormatError(f"{where}: message {k} must be {{role: system|user|assistant, content: text}}, "
                                        f"got {m!r:.120}")
        if not any(m["role"] == "user" for m in record):
            raise PromptFormatError(f"{where}: a chat prompt needs at least one user message")
        return [dict(role=m["role"], content=m["content"]) for m in record]
    raise PromptFormatError(f"{where}: a prompt must be text or a list of {{role, content}} messages, "
                            f"got {type(record).__name__}")


def display_text(record: PromptRecord) -> str:
    """The prompt as the AI labeler and a person read it (no template markers)."""
    if isinstance(record, str):
        return record
    turns = [m for m in record if m["role"] != "system"]
    if len(turns) == 1:
        return turns[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in turns)


@dataclass
class Encoded:
    token_ids: list[int]
    truncated: bool


class PromptFormatter:
    """Turns prompt records into policy token ids (see the module docstring).

    Built once per run from the policy tokenizer; `chat_template=True` with a tokenizer that
    has no chat template is refused here, before any actor starts.
    """

    def __init__(self, tokenizer, chat_template: bool, system_prompt: str | None, model_name: str):
        if chat_template and not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"data.chat_template: the tokenizer of {model_name} has no chat template; "
                              f"set data.chat_template: false or use an instruct/chat model")
        if system_prompt and not chat_template:
            raise ConfigError("data.system_prompt: a system prompt needs data.chat_template: true")
        self.tokenizer, self.chat, self.system, self.model_name = tokenizer, chat_template, system_prompt, model_name

    def _messages(self, record: PromptRecord) -> list[Message]:
        msgs = [{"role": "user", "content": record}] if isinstance(record, str) else list(record)
        if self.system and not any(m["role"] == "system" for m in msgs):
            msgs = [{"role": "system", "content": self.system}] + msgs
        return msgs

    def _render(self, msgs: list[Message]) -> list[int]:
        text = self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode(self, record: PromptRecord, max_tokens: int, truncate: bool = True) -> Encoded | None:
        """Token ids of one prompt within `max_tokens`; None when it cannot fit (over the limit
        with `truncate` off, or a template whose fixed part alone is over it)."""
        if not self.chat:
            if not isinstance(record, str):
                raise PromptFormatError("data.chat_template: the prompts hold chat messages; set data.chat_template: true")
            ids = self.tokenizer(record, add_special_tokens=True)["input_ids"]
            if len(ids) <= max_tokens:
                return Encoded(ids, False)
            head = self._bos_head(ids)  # the model was trained to see bos first: keep it
            if not truncate or max_tokens <= len(head):
                return None
            return Encoded(head + ids[len(head):][-(max_tokens - len(head)):], True)
        msgs = self._messages(record)
        ids = self._render(msgs)
        if len(ids) <= max_tokens:
            return Encoded(ids, False)
        if not truncate:
            return None
        return self._shorten_last_user(msgs, max_tokens)

    def floor(self, record: PromptRecord) -> int:
        """The fewest tokens `encode` can shorten this prompt to: the template (or bos) plus
        one token of content."""
        if not self.chat:
            return len(self._bos_head(self.tokenizer(record, add_special_tokens=True)["input_ids"])) + 1
        msgs = self._messages(record)
        last = max(i for i, m in enumerate(msgs) if m["role"] == "user")
        return len(self._render(_with_content(msgs, last, ""))) + 1

    def _bos_head(self, ids: list[int]) -> list[int]:
        bos = getattr(self.tokenizer, "bos_token_id", None)
        return ids[:1] if bos is not None and ids and ids[0] == bos else []

    def _shorten_last_user(self, msgs: list[Message], max_tokens: int) -> Encoded | None:
        """Cut the start of the last user message until the rendered prompt fits.

        Decoding a token slice and re-encoding it need not give the same count, so the
        budget is re-measured and tightened (a few rounds at most)."""
        last = max(i for i, m in enumerate(msgs) if m["role"] == "user")
        content = self.tokenizer(msgs[last]["content"], add_special_tokens=False)["input_ids"]
        overhead = len(self._render(_with_content(msgs, last, "")))
        budget = max_tokens - overhead
        while budget > 0:
            kept = self.tokenizer.decode(content[-budget:], skip_special_tokens=True)
            ids = self._render(_with_content(msgs, last, kept))
            if len(ids) <= max_tokens:
                return Encoded(ids, True)
            budget -= len(ids) - max_tokens
        return None


def _with_content(msgs: list[Message], i: int, content: str) -> list[Message]:
    out = [dict(m) for m in msgs]
    out[i]["content"] = content
    return out


def formatter_for(tokenizer, data_cfg, model_name: str) -> PromptFormatter:
    """The run's formatter from its `data:` section (chat_template, system_prompt)."""
    return PromptFormatter(tokenizer, data_cfg.chat_template, data_cfg.system_prompt, model_name)
