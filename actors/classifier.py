"""Harmless classifier: a Hugging Face sequence-classification model that scores answers.

Distribution: one actor (`eval.harmless.resources`); `probabilities` returns, for a list of
texts, P(label) = softmax(logits)[label] of each — a few floats per text to the driver.
"""

from __future__ import annotations

import ray
import torch

from rlaif_ray.config import HarmlessJudge, ModelSection
from rlaif_ray.modeling import DTYPES


class ClassifierActor:
    def __init__(self, judge: HarmlessJudge, model: ModelSection):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.judge, self.name = judge, "classifier"
        self.tokenizer = AutoTokenizer.from_pretrained(judge.classifier, trust_remote_code=model.trust_remote_code)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            judge.classifier, dtype=DTYPES[model.dtype], trust_remote_code=model.trust_remote_code)
        n_labels = self.model.config.num_labels
        if judge.harmless_label >= n_labels:
            raise ValueError(f"eval.harmless.harmless_label: {judge.harmless_label}, but {judge.classifier} has "
                             f"{n_labels} labels ({self.model.config.id2label})")
        # Decoder classifiers pool the last non-pad token; they need a pad id to find it.
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.tokenizer.padding_side = "right"
        device = "cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu"
        self.model.to(device).eval().requires_grad_(False)

    def ping(self) -> str:
        return self.name

    @torch.no_grad()
    def probabilities(self, texts: list[str]) -> list[float]:
        """P(harmless label) of each text, texts truncated to `max_tokens` tokens."""
        j, out = self.judge, []
        device = next(self.model.parameters()).device
        for s in range(0, len(texts), j.batch_size):
            enc = self.tokenizer(texts[s: s + j.batch_size], padding=True, truncation=True,
                                 max_length=j.max_tokens, return_tensors="pt").to(device)
            logits = self.model(**enc).logits.float()                      # (b, num_labels)
            out.extend(torch.softmax(logits, dim=-1)[:, j.harmless_label].cpu().tolist())
        return out
