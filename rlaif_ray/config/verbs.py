"""The sections only one verb reads (`eval`, `rejection-sampling`, `train-rm`, `dpo`,
`label`), and the config types of the verbs that start no training roles: `LabelConfig`,
`RewardModelConfig`, `DPOConfig`, `EvalConfig`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from rlaif_ray.config.sections import (HeldOutPromptFormat, LabelerModel, ModelSection, PolicyModel, PromptFormat,
                                       Resources, VerbConfig, _Strict)
from rlaif_ray.config.training import AnswerEngines, LabelerSection, moved_function_error

class EvalSampling(_Strict):
    """How each policy answers the held-out prompts."""

    temperature: float = Field(1.0, ge=0, description="0: greedy; > 0: sampled, each answer seeded by (run.seed, policy, prompt position).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass (sampled answers).")
    max_new_tokens: int = Field(32, ge=1, description="Longest answer, tokens.")
    stop: list[str] = Field(default_factory=list, description="Stop strings (eos always stops).")


class HarmlessJudge(_Strict):
    """A sequence-classification model that flags answers harmless (RLAIF §3.4 harmless rate)."""

    classifier: str = Field(..., description="HF sequence-classification model: hub name or local path.")
    harmless_label: int = Field(0, ge=0, description="Index of the classifier's label that means harmless.")
    threshold: float = Field(0.5, ge=0, le=1, description="An answer is harmless when P(harmless label) ≥ this.")
    include_prompt: bool = Field(False, description="Classify prompt + answer instead of the answer alone.")
    max_tokens: int = Field(512, ge=1, description="Classifier inputs are truncated to this many tokens.")
    batch_size: int = Field(32, ge=1, description="Texts per classifier forward.")
    resources: Resources = Field(default_factory=Resources, description="Resources of the classifier actor.")


class EvalSection(_Strict):
    """`rlaif-ray eval`: policy A against policy B on held-out prompts, judged by the AI labeler."""

    policy_a: str | None = Field(None, description="Policy A (the one evaluated): any HF folder or hub name, e.g. RUN_DIR/checkpoints/iter-000012/hf.")
    policy_b: str | None = Field(None, description="Policy B (the baseline); null: model.policy (the initial SFT policy).")
    prompts: str = Field(..., description="Held-out prompts file (.jsonl/.json/.parquet) or HF dataset, never used in training "
                         "(the toy task's: .cache/tiny-models/prompts-heldout.jsonl, written by `rlaif-ray make-tiny-models`).")
    prompt_column: str = Field("prompt", description="Column of `prompts` holding the prompt text.")
    prompts_split: str = Field("test", description="Split when `prompts` is an HF dataset name.")
    num_prompts: int = Field(64, ge=1, description="Prompts evaluated (the first ones of the source; ≥ 64 for a win-rate claim).")
    sampling: EvalSampling = Field(default_factory=EvalSampling, description="How the policies answer.")
    actors_per_policy: int = Field(1, ge=1, description="vLLM engines per policy (resources: rollout.resources).")
    harmless: HarmlessJudge | None = Field(None, description="Harmless-rate classifier; null: no harmless rate.")
    function_judge: str | None = Field(None, description="Optional ground truth 'package.module:function' of (response) or (prompt, response), e.g. toy.task:rule_score.")
    run_dirs: list[str] = Field(default_factory=list, description="Run dirs whose metrics.jsonl curves are plotted.")
    curves: list[str] = Field(default_factory=lambda: ["reward/mean", "kl/mean", "response_length/mean"], description="Metrics plotted from run_dirs, one PNG each.")
    output_dir: str = Field("runs/eval", description="Where report.md, eval.json, answers.jsonl and the PNGs go.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence of the win-rate interval (Wilson).")

    @field_validator("prompts", mode="before")
    @classmethod
    def _prompts_given(cls, value):
        if value is None:  # null used to mean the toy task's held-out split
            raise ValueError("required: a held-out prompts file or dataset (for the toy task: "
                             ".cache/tiny-models/prompts-heldout.jsonl, written by `rlaif-ray make-tiny-models`)")
        return value

    @field_validator("function_judge")
    @classmethod
    def _judge_not_moved(cls, value):
        if moved := moved_function_error(value):
            raise ValueError(moved)
        return value


class RejectionSamplingSection(_Strict):
    """`rlaif-ray rejection-sampling`: best-of-n by the labeler's direct reward, then SFT on the winners.

    The rest of a round is written where the training run writes it: run.iterations rounds,
    data.prompts_per_iteration prompts per round, rollout.sampling.samples_per_prompt samples
    per prompt (n), learner.lr for the fine-tune.
    """

    sft_epochs: int = Field(1, ge=1, description="Passes over each round's kept samples.")
    minibatch_size: int = Field(8, ge=1, description="Kept samples per optimiser step, over all learners (must divide data.prompts_per_iteration).")
    output_dir: str = Field("runs/rejection-sampling", description="Where config.yaml, metrics.jsonl and final/hf (the policy) go.")

    @model_validator(mode="before")
    @classmethod
    def _moved_fields(cls, raw):
        # Until 2026-12 this section repeated four training fields under its own names.
        for old, new in REJECTION_MOVED.items():
            if isinstance(raw, dict) and old in raw:
                raise ValueError(f"{old}: write {new} instead (rejection sampling reads the training run's own field now)")
        return raw


REJECTION_MOVED = {"rounds": "run.iterations", "prompts_per_round": "data.prompts_per_iteration",
                   "samples_per_prompt": "rollout.sampling.samples_per_prompt", "lr": "learner.lr"}
"""rejection_sampling fields that moved, old name → the field that holds it now."""


class _PreferenceTraining(_Strict):
    """What reward-model training and DPO share: preference pairs, epochs, DeepSpeed workers."""

    data: str = Field(..., description="Preference pairs: a folder of *.parquet shards (`rlaif-ray label`) or one .parquet/.jsonl; "
                             "columns context, response_a, response_b and p_a and/or human_choice.")
    labels: Literal["soft", "hard", "human"] = Field("soft", description="soft: target P(A) = p_a; hard: A wins iff p_a > 0.5 (ties dropped); "
                                                     "human: human_choice (index of the preferred response; missing ones dropped).")
    epochs: int = Field(1, ge=1, description="Passes over the training pairs.")
    lr: float = Field(1e-5, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    batch_size: int = Field(16, ge=1, description="Pairs per optimiser step, over all workers.")
    eval_fraction: float = Field(0.1, ge=0, lt=1, description="Share of the pairs held out for evaluation (split seeded by run.seed).")
    max_tokens: int = Field(512, ge=8, description="Longest prompt + response sequence, tokens; longer ones lose the start of the prompt (counted).")
    num_workers: int = Field(2, ge=1, description="Data-parallel DeepSpeed workers.")
    zero_stage: Literal[0, 1, 2, 3] = Field(0, description="DeepSpeed ZeRO stage.")
    resources: Resources = Field(default_factory=Resources, description="Per-worker resources (GPUs: NCCL, else gloo).")

    @model_validator(mode="after")
    def _divisible(self):
        if self.batch_size % self.num_workers:
            raise ValueError(f"batch_size: {self.batch_size} must be divisible by num_workers ({self.num_workers})")
        return self


class RewardModelTrainSection(_PreferenceTraining):
    """`rlaif-ray train-rm`: a scalar reward model on (AI) preference pairs (distilled RLAIF).

    Scores are read from `AutoModelForSequenceClassification(num_labels=1)` on the text
    'prompt\\nresponse'; the saved folder is a `reward_model` source for PPO.
    """

    backbone: str | None = Field(None, description="Causal-LM checkpoint the RM starts from (e.g. .cache/tiny-models/reward_backbone); null: model.policy.")
    margin: float | None = Field(None, ge=0, description="Bradley–Terry margin m, L = −log σ(r_A − r_B − m) (Llama 2); hard/human labels only.")
    output_dir: str = Field("runs/reward-model", description="Where the HF-format RM, its tokenizer and metrics.jsonl go.")

    @model_validator(mode="after")
    def _margin_needs_hard_labels(self):
        if self.margin is not None and self.labels == "soft":
            raise ValueError("margin: a margin needs labels hard or human (soft labels use cross-entropy on p_a)")
        return self


class DPOSection(_PreferenceTraining):
    """`rlaif-ray dpo`: Direct Preference Optimisation of the policy on preference pairs.

    The reference is the initial policy (frozen; its logprobs computed once, up front).
    """

    labels: Literal["soft", "hard", "human"] = Field("hard", description="hard: standard DPO (A wins iff p_a > 0.5); soft: target p_a (soft-label DPO); human: human_choice.")
    lr: float = Field(1e-6, gt=0, description="AdamW learning rate.")
    beta: float = Field(0.1, gt=0, description="DPO β: strength of the implicit KL to the reference.")
    policy: str | None = Field(None, description="Policy to optimise, and its frozen reference; null: model.policy.")
    output_dir: str = Field("runs/dpo", description="Where the HF-format policy, its tokenizer and metrics.jsonl go.")


class LabelSection(_Strict):
    """`rlaif-ray label`: AI preference labels (both orders, averaged) for a dataset of response pairs.

    The labeler's engine is `model.labeler`, its prompt (task, preamble, few-shot, chain of
    thought) and actors come from `labeler:`; its context is sized from `label.max_pair_tokens`
    (the job checks that every pair fits before it starts).
    """

    source: str = Field(..., description="Pairs: a .jsonl/.json/.parquet file, a directory of Parquet, or an HF dataset name.")
    format: Literal["generic", "summarize_from_feedback", "hh_rlhf"] = Field(
        "generic", description="generic: the *_column fields; summarize_from_feedback: OpenAI comparisons (info.post, summaries[i].text, choice); "
        "hh_rlhf: Anthropic chosen/rejected dialogues.")
    split: str = Field("train", description="Split when `source` is an HF dataset name.")
    subset: str | None = Field(None, description="HF dataset config name, e.g. 'comparisons' for openai/summarize_from_feedback.")
    context_column: str = Field("context", description="generic: column holding the prompt / context.")
    response_a_column: str = Field("response_a", description="generic: column holding response A.")
    response_b_column: str = Field("response_b", description="generic: column holding response B.")
    human_choice_column: str | None = Field(None, description="generic: column with the human's pick, 0 (A) or 1 (B) or null; null: no human labels.")
    output_dir: str = Field("runs/labels", description="Where shard-NNNNN.parquet, manifest.json and summary.json go; a re-run resumes by shard.")
    shard_size: int = Field(256, ge=1, description="Pairs per shard: the unit of work of one labeler call, of writing and of resuming.")
    seed: int = Field(0, description="hh_rlhf: seed of the coin that shows the chosen response as A or B.")
    max_pairs: int | None = Field(None, ge=1, description="Label only the first N pairs of the source; null: all.")
    max_pair_tokens: int = Field(160, ge=1, description="Tokens of one pair's text (context and both responses) the labeler engine "
                                 "makes room for: its context is 512 + 256·few-shot + this (+ rationale). Every pair is checked before starting.")


class LabelConfig(VerbConfig):
    """`rlaif-ray label`: AI preference labels for a dataset of response pairs."""

    model: LabelerModel = Field(..., description="The AI labeler.")
    labeler: LabelerSection = Field(default_factory=LabelerSection, description="Labeler actors and prompts.")
    label: LabelSection = Field(..., description="The pairs, their format and where the labels go.")


class RewardModelConfig(VerbConfig):
    """`rlaif-ray train-rm`: a reward model from preference pairs."""

    model: PolicyModel = Field(..., description="model.policy: the RM's backbone when reward_model_train.backbone is null.")
    reward_model_train: RewardModelTrainSection = Field(..., description="The pairs, the training and where the RM goes.")


class DPOConfig(VerbConfig):
    """`rlaif-ray dpo`: the policy fine-tuned by DPO on preference pairs."""

    model: PolicyModel = Field(..., description="model.policy: the policy (and its frozen reference) when dpo.policy is null.")
    data: PromptFormat = Field(default_factory=PromptFormat, description="How prompts are rendered (as the policy sees them in PPO).")
    dpo: DPOSection = Field(..., description="The pairs, the training and where the policy goes.")


class EvalConfig(VerbConfig):
    """`rlaif-ray eval`: policy A against policy B on held-out prompts, judged by the AI labeler."""

    model: ModelSection = Field(..., description="model.policy: policy B when eval.policy_b is null; model.labeler: the judge.")
    data: HeldOutPromptFormat = Field(default_factory=HeldOutPromptFormat, description="How held-out prompts are rendered and cut.")
    rollout: AnswerEngines = Field(default_factory=AnswerEngines, description="The engines that answer (eval.actors_per_policy per policy).")
    labeler: LabelerSection = Field(default_factory=LabelerSection, description="The judge's actors and prompts.")
    eval: EvalSection = Field(..., description="The two policies, the prompts and the report.")

