"""The sections of a training run (`rlaif-ray train`, and rejection sampling, which trains):
the roles (rollout, labeler, reference, learner, reward scorers), the PPO step, the KL
term, weight sync, pipelining, and fault injection."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from rlaif_ray.config.sections import Resources, Sampling, _Strict

class AnswerEngines(_Strict):
    """vLLM engines that answer prompts with a policy: the rollout actors, and eval's answer engines."""

    kv_cache_mib: int | None = Field(
        None, ge=16, description="KV cache per engine on CPU, MiB. null: sized to hold every sequence of one generate call at "
        "once (its prompts × samples_per_prompt, prompt + new tokens each), at most 1/8 of the node's RAM. A cache too small "
        "for them makes vLLM generate in waves (measured 1.7× slower on a ~75M Llama); the run says so when it starts.")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vLLM's GPU memory share (GPU only).")
    resources: Resources = Field(default_factory=Resources, description="Per-actor resources.")


class RolloutSection(AnswerEngines):
    num_actors: int = Field(2, ge=1, description="vLLM rollout actors.")
    sampling: Sampling = Field(default_factory=Sampling, description="Generation settings.")


class LabelerSection(_Strict):
    num_actors: int = Field(1, ge=1, description="vLLM labeler actors.")
    task: Literal["generic", "summarization", "helpful", "harmless"] = Field("generic", description="Prompt template family.")
    preamble: Literal["base", "detailed"] = Field("base", description="One-line or detailed instructions.")
    few_shot: list[dict[str, Any]] = Field(default_factory=list, description="Exemplars: {context, responses, label, rationale?}.")
    chain_of_thought: bool = Field(False, description="Decode a rationale first, then score after it.")
    rationale_max_tokens: int = Field(64, ge=1, description="Longest rationale (chain of thought).")
    chat_template: bool = Field(False, description="Ask a chat labeler in its own chat template: the instruction in a user turn, "
                                "the label read at the start of the assistant turn (after the answer prefix).")
    direct_answer_prefix: str = Field("Score:", description="chat_template: text the assistant turn starts with before the score "
                                      "('' reads the score at the turn's very start).")
    pairwise_answer_prefix: str = Field("Preferred Response=", description="chat_template: text the assistant turn starts with "
                                        "before the preferred response's number.")
    score_min: int = Field(1, description="Lowest score the labeler is asked for (direct reward needs 1).")
    score_max: int = Field(10, description="Highest score (direct reward needs 10).")
    batch_size: int = Field(64, ge=1, description="Samples per engine call.")
    kv_cache_mib: int = Field(512, ge=16, description="KV cache of the labeler engine, MiB.")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vLLM's GPU memory share of a labeler engine (GPU only).")
    resources: Resources = Field(default_factory=Resources, description="Per-actor resources.")

    @model_validator(mode="after")
    def _prefixes_end_cleanly(self) -> "LabelerSection":
        for name in ("direct_answer_prefix", "pairwise_answer_prefix"):
            value = getattr(self, name)
            if value != value.rstrip():
                # The candidates carry their own leading space; a trailing one would be a lone
                # space token the labeler never writes before a number.
                raise ValueError(f"{name}: must not end with whitespace, got {value!r}")
        return self


MOVED_MODULES = {"rlaif_ray.toy_task": "toy.task"}
"""Modules that left the library, old name → new name: the toy task is a fixture (toy/), not the product."""


def moved_function_error(path: str | None) -> str | None:
    """For a 'package.module:function' path whose module moved, the one line that says where to; else None."""
    module, _, name = (path or "").partition(":")
    if module not in MOVED_MODULES:
        return None
    return f"{path} moved to {MOVED_MODULES[module]}:{name} (the toy world left the library); write that instead"


class RewardSource(_Strict):
    kind: Literal["labeler_direct", "function", "reward_model", "classifier"] = Field(
        "labeler_direct", description="labeler_direct: the AI labeler's score; function: a Python function of (prompt, response); "
        "reward_model: a sequence-classification RM's scalar score; classifier: one label's logit or probability of an HF classifier.")
    weight: float = Field(1.0, description="Weight of this source in the summed reward (0: logged only, e.g. a ground-truth check).")
    function: str | None = Field(None, description="For kind function: 'package.module:function' returning a float.")
    model: str | None = Field(None, description="For reward_model/classifier: hub name or local path of an AutoModelForSequenceClassification.")
    class_label: int | str | None = Field(None, description="For classifier: the label (index, or a name in its id2label) whose output is the reward.")
    output: Literal["logit", "prob"] = Field("logit", description="For classifier: the label's raw logit or its softmax probability.")
    response_only: bool = Field(False, description="For reward_model/classifier: score the response alone instead of 'prompt\\nresponse'.")
    num_actors: int = Field(1, ge=1, description="For reward_model/classifier: scorer actors of this source.")
    batch_size: int = Field(32, ge=1, description="For reward_model/classifier: sequences per forward pass.")
    resources: Resources = Field(default_factory=Resources, description="For reward_model/classifier: per-actor resources.")
    name: str | None = Field(None, description="Metric name of this source (default: its kind, or the function's name).")

    @model_validator(mode="after")
    def _function_needs_path(self) -> "RewardSource":
        if self.kind == "function" and (not self.function or ":" not in self.function):
            raise ValueError("function: kind function needs function: 'package.module:function'")
        if self.kind == "function" and (moved := moved_function_error(self.function)):
            raise ValueError(f"function: {moved}")
        if self.kind in ("reward_model", "classifier") and not self.model:
            raise ValueError(f"model: kind {self.kind} needs model: a sequence-classification model (path or hub name)")
        if self.kind == "classifier" and self.class_label is None:
            raise ValueError("class_label: kind classifier needs class_label: the label index or name to reward")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return self.function.split(":")[1] if self.kind == "function" else self.kind


class RewardSection(_Strict):
    sources: list[RewardSource] = Field(default_factory=lambda: [RewardSource()], min_length=1, description="Reward sources, summed with their weights.")
    objective: Literal["kl_penalty", "paper"] = Field("kl_penalty", description="kl_penalty: r − β·KL; paper: (1−β)·r − β·KL (RLAIF eq. 2).")


class ReferenceSection(_Strict):
    num_actors: int = Field(1, ge=1, description="Reference scorers; each takes a contiguous share of the rollout shards.")
    resources: Resources = Field(default_factory=Resources, description="Resources of each reference scorer.")
    batch_size: int = Field(32, ge=1, description="Sequences per forward pass.")


class LearnerSection(_Strict):
    num_workers: int = Field(2, ge=1, description="Data-parallel DeepSpeed workers.")
    zero_stage: Literal[0, 1, 2, 3] = Field(0, description="DeepSpeed ZeRO stage.")
    lr: float = Field(1e-5, gt=0, description="Policy learning rate (AdamW).")
    critic_lr: float = Field(5e-5, gt=0, description="Critic learning rate (PPO only).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    backend: Literal["auto", "gloo", "nccl"] = Field("auto", description="torch.distributed backend; auto: nccl with GPUs, gloo on CPU.")
    forward_batch_size: int = Field(16, ge=1, description="Sequences per forward when computing old logprobs/values.")
    resources: Resources = Field(default_factory=Resources, description="Per-worker resources.")


class PPOSection(_Strict):
    algorithm: Literal["ppo", "grpo", "rloo", "reinforce_pp"] = Field("ppo", description="Advantage estimator; ppo uses a critic.")
    epochs: int = Field(1, ge=1, description="Passes over each batch.")
    minibatch_size: int = Field(16, ge=1, description="Sequences per optimiser step, over all learners.")
    clip: float = Field(0.2, gt=0, description="Policy ratio clip ε.")
    value_clip: float = Field(0.2, gt=0, description="Value clip (PPO).")
    value_coef: float = Field(0.5, ge=0, description="Value loss weight (PPO).")
    entropy_coef: float = Field(0.0, ge=0, description="Entropy bonus weight.")
    gamma: float = Field(1.0, gt=0, le=1, description="Discount.")
    lam: float = Field(0.95, ge=0, le=1, description="GAE λ.")
    off_policy_correction: Literal["none", "tis", "decoupled"] = Field(
        "none", description="Correction for samples whose behaviour policy (the engine that generated them) differs from the learner's "
        "π_old: none; tis: each token's PPO term weighted by min(π_old/π_behaviour, importance_cap); decoupled: weight "
        "π_old/π_behaviour, tokens above importance_cap leave the loss (docs/pipeline.md).")
    importance_cap: float = Field(2.0, gt=1, description="C of off_policy_correction: the largest importance weight π_old/π_behaviour used.")
    old_logprobs: Literal["learner", "rollout"] = Field(
        "learner", description="Where log π_old comes from. learner: a forward of the policy over the whole batch before any "
        "update. rollout: the logprobs the engine sampled with, the same weights on the synchronous loop, which saves that "
        "forward; the engine-vs-learner numerics (sync/max_logprob_diff) then enter the ratio, and the entropy metric is "
        "measured on the first epoch's steps. rollout needs pipeline.max_staleness 0 and off_policy_correction none.")


class PipelineSection(_Strict):
    max_staleness: int = Field(0, ge=0, description="k: the rollout engines generate up to k batches ahead while the current one is scored and "
                               "trained, so a batch is trained by a policy at most k versions newer than the one that generated it; "
                               "0: the synchronous loop.")
    chunk_prompts: int | None = Field(None, ge=1, description="Prompts per rollout chunk (all samples of a prompt stay together); each chunk "
                                      "goes to the labeler, reference and scorers as soon as it is generated. null: one chunk per rollout actor.")
    allow_uncorrected: bool = Field(False, description="Allow max_staleness ≥ 1 with ppo.off_policy_correction: none (stale samples "
                                    "trained as if on-policy).")


class KLSection(_Strict):
    estimator: Literal["k1", "k2", "k3"] = Field("k1", description="Per-token KL estimator.")
    placement: Literal["reward", "loss"] = Field("reward", description="KL as a per-token reward penalty or as a loss term.")
    controller: Literal["fixed", "adaptive"] = Field("fixed", description="Fixed β or adaptive (Ziegler et al. 2019).")
    coef: float = Field(0.05, ge=0, description="β (initial β when adaptive).")
    target: float | None = Field(None, gt=0, description="Target KL per sequence (adaptive).")
    horizon: int = Field(10000, ge=1, description="Adaptive controller horizon, samples.")


# Default sync.probe_bound per engine dtype: between what the probe reads after a correct sync
# and after a broken one. Measured by bench/probe_bounds.py on SmolLM2-135M-Instruct (CPU,
# vLLM 0.32 vs transformers 5.19; docs/weight-sync.md has the table), max over 5 probe seeds,
# weights moved by 4 AdamW steps at lr 1e-6 / 1e-5 / 1e-4:
#   float32  correct 1.4e-5..1.6e-5 (tiny models ~2e-6). Broken at lr 1e-6: stale prefix cache
#            1.4e-2, tied head not reloaded 2.7e-3, not synced 4.1e-2; one stale MLP tensor
#            1.6e-4 at lr 1e-6, 1.4e-3 at lr 1e-5. 2e-4 is the geometric middle of 1.6e-5 and
#            2.7e-3: 12x above any correct reading, under every broken one but a single stale
#            tensor after the smallest update.
#   bfloat16 correct 0.12..0.46 (bf16 rounding of both implementations); broken readings at
#            lr ≤ 1e-5 fall inside that range (indistinguishable); at lr 1e-4 not synced 1.3,
#            stale prefix 0.48. 1.0 catches only gross failures without false alarms.
# float16 has 3 more mantissa bits than bfloat16, so bfloat16's bound is a safe (loose) one for it.
PROBE_BOUNDS = {"float32": 2e-4, "bfloat16": 1.0, "float16": 1.0}


class SyncSection(_Strict):
    backend: Literal["object_store", "nccl"] = Field("object_store", description="How new weights reach the rollout engines.")
    bucket_mib: int = Field(64, ge=1, description="Bucket size of the gathered weights, MiB.")
    timeout_s: float = Field(120.0, gt=0, description="A sync past this raises, naming the actor.")
    probe: bool = Field(True, description="Score a fixed sequence on engine 0 and the learner after a sync (see probe_every).")
    probe_bound: float | None = Field(None, gt=0, description="Largest sync/max_logprob_diff a correct sync may read; "
                                      "null: a per-dtype default (float32 2e-4, bfloat16/float16 1.0; see docs/weight-sync.md).")
    probe_action: Literal["warn", "stop"] = Field("warn", description="When the probe reads above its bound: "
                                                  "warn (one log line naming the engine and the figure) or stop the run.")
    # Default 5, from the probe's measured share of an iteration (its own `timing/probe` in every
    # row, so no A/B run is needed to know the saving): default run 0.033-0.045 s of 0.85-0.91 s
    # (4-5 %, 2026-12-06, this 2-core machine); TRL comparison 0.76 s of 15.9 s (4.8 %, issue
    # 13); SmolLM2-135M 1.9-3.8 s of 69-137 s (~3 %). Every 5th sync brings that to ≤ 1 %; a
    # broken sync is then seen at most 4 iterations late, and the cases that break a sync (a
    # replacement engine, a rebuilt learner group, a resumed run) are always probed at once.
    probe_every: int = Field(5, ge=1, description="Probe every k-th sync; always on a run's (or resumed run's) "
                             "first iteration and after a rollout actor was replaced; skipped rows lack sync/max_logprob_diff.")

    def probe_bound_for(self, dtype: str) -> float:
        """The bound in force for engines of `dtype`."""
        return self.probe_bound if self.probe_bound is not None else PROBE_BOUNDS[dtype]


class Fault(_Strict):
    """One injected failure, for checking recovery (the run's own chaos test)."""

    role: Literal["rollout", "labeler", "reference", "learner"] = Field(..., description="Which role to hit.")
    actor: int = Field(0, ge=0, description="Index of the actor in its pool.")
    iteration: int = Field(..., ge=1, description="Iteration (1-based) during which it strikes.")
    kind: Literal["kill", "stall"] = Field("kill", description="kill: SIGKILL of the actor's process at its first call of that iteration; "
                                           "stall: SIGSTOP of it for stall_s (actors on the driver's node).")
    stall_s: float = Field(60.0, gt=0, description="How long a stall lasts.")


class ChaosSection(_Strict):
    faults: list[Fault] = Field(default_factory=list, description="Failures to inject (empty in real runs).")
