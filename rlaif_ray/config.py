"""One typed, validated config per run.

A run is one YAML file parsed into `RunConfig`. Every default lives here, every field has a
one-line description (`rlaif-ray config schema` prints them), unknown keys are rejected, and
cross-field rules are checked before any actor starts. Errors name the field path:

    config error: ppo.clip: Input should be greater than 0
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A run config that cannot be used; the message names every bad field path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Resources(_Strict):
    """What one actor of a role reserves; Ray's placement groups and autoscaler read it."""

    num_cpus: float = Field(1.0, ge=0, description="CPUs reserved per actor.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs reserved per actor (0 on CPU).")
    custom: dict[str, float] = Field(
        default_factory=dict,
        description="Custom Ray resources per actor, e.g. {rollout: 1} to pin a role to a node type.",
    )
    cpu_affinity: list[int] | None = Field(None, min_length=1, description="CPU cores (Linux ids) this role's actors run on, "
                                           "with that many compute threads each; gives roles disjoint cores on a shared CPU node. null: Ray's default.")

    def as_bundle(self) -> dict[str, float]:
        """The placement-group bundle of one actor."""
        bundle = {"CPU": self.num_cpus, **self.custom}
        if self.num_gpus:
            bundle["GPU"] = self.num_gpus
        return {k: v for k, v in bundle.items() if v > 0}


class RunSection(_Strict):
    name: str = Field("rlaif", description="Human-readable run name (metrics, TensorBoard).")
    seed: int = Field(0, description="Seed of prompts order, sampling, minibatches and init.")
    iterations: int = Field(10, ge=1, description="PPO iterations to run.")
    checkpoint_every: int = Field(0, ge=0, description="Checkpoint every k iterations instead of by time (0: by checkpoint_every_minutes). There is always one at the end.")
    checkpoint_every_minutes: float = Field(
        10.0, ge=0,
        description="With checkpoint_every 0: checkpoint once this many minutes have passed since the last one (or the "
                    "start), so a crash loses at most this plus one iteration; 0: only at the end. Measured on "
                    "configs/local.yaml (2 CPU cores): a checkpoint takes 0.07 s (15 MB, sha256 included) against 1.0 s "
                    "per iteration, i.e. 7 % if taken every iteration, 0.01 % every 10 minutes; a SmolLM2-135M-sized "
                    "state (1.6 GB) saves in 5 s + 2 s sha256, about 1 % of 10 minutes. Raise it where a checkpoint "
                    "takes minutes (each manifest.json records its seconds).")
    keep_checkpoints: int = Field(2, ge=1, description="How many most recent checkpoints to keep.")
    call_timeout_s: float = Field(600.0, gt=0, description="Timeout of one cross-actor call; past it the actor is treated as failed.")
    startup_timeout_s: float = Field(900.0, gt=0, description="Timeout for reserving resources and starting an actor (autoscaling can take minutes).")
    max_actor_restarts: int = Field(3, ge=0, description="How often one call is redone on a fresh actor (its actor died, was lost or passed "
                                    "call_timeout_s) before the run stops; every role but the learners.")
    max_learner_restarts: int = Field(2, ge=0, description="How often a lost learner worker gets the learner group rebuilt from the newest "
                                      "intact checkpoint within one run; past it (or with no checkpoint yet) the run stops with the --resume command.")
    log_samples: int = Field(4, ge=0, description="Samples per iteration (seeded choice) written with their rewards, KL and length to RUN_DIR/samples.jsonl and TensorBoard; 0: none.")


class RayInit(_Strict):
    address: str | None = Field(None, description="Cluster address; null starts a private local Ray (local mode), 'auto' joins the cluster a job runs in.")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the local Ray (local mode only); null: all.")
    temp_dir: str | None = Field(None, description="Private Ray temp dir for local mode; null: a fresh one under /tmp.")
    object_store_mib: int = Field(1024, ge=64, description="Object store size of the local Ray, MiB.")
    env_vars: dict[str, str] = Field(default_factory=dict, description="Extra environment variables for every actor (runtime_env).")


class ModelSection(_Strict):
    policy: str = Field(..., description="Policy (and reference) model: HF hub name or local path.")
    labeler: str = Field(..., description="AI labeler model: HF hub name or local path.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Dtype of every engine.")
    trust_remote_code: bool = Field(False, description="Passed to from_pretrained and vLLM.")


class DataSection(_Strict):
    source: str = Field(..., description="Prompts: a .jsonl/.json/.parquet file, a directory of Parquet, or an HF dataset name.")
    split: str = Field("train", description="Dataset split when `source` is an HF dataset name.")
    prompt_column: str = Field("prompt", description="Column holding the prompt text.")
    prompts_per_iteration: int = Field(8, ge=1, description="Distinct prompts per PPO iteration.")
    max_prompt_tokens: int = Field(128, ge=1, description="Prompts longer than this are truncated or dropped (counted).")
    long_prompts: Literal["truncate", "drop"] = Field("truncate", description="What to do with a prompt over max_prompt_tokens.")
    chat_template: bool = Field(False, description="Render each prompt with the policy tokenizer's chat template (user turn, assistant turn opened); "
                                "needed for prompts stored as chat messages [{role, content}, ...].")
    system_prompt: str | None = Field(None, description="System message put before every prompt (chat_template only; "
                                      "a prompt's own system message wins).")


class Sampling(_Strict):
    samples_per_prompt: int = Field(4, ge=1, description="Responses generated per prompt (the group size).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int = Field(-1, description="Top-k sampling; -1 disables.")
    max_new_tokens: int = Field(32, ge=1, description="Longest response, tokens.")
    stop: list[str] = Field(default_factory=list, description="Stop strings (eos always stops).")


class RolloutSection(_Strict):
    num_actors: int = Field(2, ge=1, description="vLLM rollout actors.")
    sampling: Sampling = Field(default_factory=Sampling, description="Generation settings.")
    kv_cache_mib: int = Field(512, ge=16, description="KV cache per engine, MiB (CPU: keeps engines from taking all RAM).")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vLLM's GPU memory share (GPU only).")
    resources: Resources = Field(default_factory=Resources, description="Per-actor resources.")


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
    """`rlaif-ray rejection-sampling`: best-of-n by the labeler's direct reward, then SFT on the winners."""

    rounds: int = Field(3, ge=1, description="Generate → pick best → fine-tune rounds.")
    samples_per_prompt: int = Field(4, ge=2, description="n: samples per prompt; the best by direct reward is kept.")
    prompts_per_round: int = Field(16, ge=1, description="Prompts per round (from data.source, in the data stream's order).")
    sft_epochs: int = Field(1, ge=1, description="Passes over each round's kept samples.")
    minibatch_size: int = Field(8, ge=1, description="Kept samples per optimiser step, over all learners (must divide prompts_per_round).")
    lr: float = Field(1e-5, gt=0, description="SFT learning rate (AdamW; replaces learner.lr).")
    output_dir: str = Field("runs/rejection-sampling", description="Where config.yaml, metrics.jsonl and final/hf (the policy) go.")


class _PreferenceTraining(_Strict):
    """What reward-model training and DPO share: preference pairs, epochs, DeepSpeed workers."""

    data: str | None = Field(None, description="Preference pairs: a folder of *.parquet shards (`rlaif-ray label`) or one .parquet/.jsonl; "
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
    thought) and actors come from `labeler:`; its context is sized like in training, from
    `data.max_prompt_tokens` + `rollout.sampling.max_new_tokens` (the job checks that every
    pair fits before it starts). A label YAML may leave out `model.policy` and `data.source`:
    the label verb sets them to `model.labeler` and `label.source` (a label run reads neither).
    """

    source: str | None = Field(None, description="Pairs: a .jsonl/.json/.parquet file, a directory of Parquet, or an HF dataset name (required by `rlaif-ray label`).")
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


class RunConfig(_Strict):
    """The whole run. Sections mirror the roles of the system."""

    run: RunSection = Field(default_factory=RunSection, description="Run length, seed, checkpoints and fault tolerance.")
    ray: RayInit = Field(default_factory=RayInit, description="How Ray is started or joined.")
    model: ModelSection = Field(..., description="Policy and labeler models.")
    data: DataSection = Field(..., description="Prompt dataset and tokenization limits.")
    rollout: RolloutSection = Field(default_factory=RolloutSection, description="vLLM rollout actors and sampling.")
    labeler: LabelerSection = Field(default_factory=LabelerSection, description="AI labeler actors and prompts.")
    reward: RewardSection = Field(default_factory=RewardSection, description="Reward sources and objective.")
    reference: ReferenceSection = Field(default_factory=ReferenceSection, description="Reference-policy scorer.")
    learner: LearnerSection = Field(default_factory=LearnerSection, description="DeepSpeed learner workers and optimiser.")
    ppo: PPOSection = Field(default_factory=PPOSection, description="Advantage estimator and PPO loss settings.")
    kl: KLSection = Field(default_factory=KLSection, description="KL penalty to the reference policy.")
    sync: SyncSection = Field(default_factory=SyncSection, description="Weight sync from learners to rollout engines.")
    pipeline: PipelineSection = Field(default_factory=PipelineSection, description="Overlap of generation with scoring and training (staleness bound, chunks).")
    chaos: ChaosSection = Field(default_factory=ChaosSection, description="Fault injection for recovery tests (empty in real runs).")
    reward_model_train: RewardModelTrainSection = Field(default_factory=RewardModelTrainSection, description="Reward-model training (`rlaif-ray train-rm`); unused by PPO.")
    dpo: DPOSection = Field(default_factory=DPOSection, description="DPO from preference pairs (`rlaif-ray dpo`); unused by PPO.")
    eval: EvalSection | None = Field(None, description="Policy-vs-policy evaluation (`rlaif-ray eval`, which requires it); null in other runs.")
    rejection_sampling: RejectionSamplingSection = Field(default_factory=RejectionSamplingSection, description="Best-of-n rejection sampling (`rlaif-ray rejection-sampling`).")
    label: LabelSection = Field(default_factory=LabelSection, description="AI preference labeling of response pairs (`rlaif-ray label`); unused by PPO.")

    @model_validator(mode="before")
    @classmethod
    def _drop_default_eval(cls, raw: Any) -> Any:
        # Every run's config.yaml written before eval.prompts became required holds the whole
        # eval section at its defaults (policy_a and prompts null): it names nothing to
        # evaluate, and dropping it keeps those runs resumable. A section that names a
        # policy_a, or leaves prompts out, is validated (and fails naming eval.prompts).
        e = raw.get("eval") if isinstance(raw, dict) else None
        if isinstance(e, dict) and "prompts" in e and e["prompts"] is None and e.get("policy_a") is None:
            raw = {**raw, "eval": None}
        return raw

    @model_validator(mode="after")
    def _cross_field(self) -> "RunConfig":
        errors = list(_cross_field_errors(self))
        if errors:
            raise ValueError("; ".join(errors))
        return self

    # Derived values live here, in one place.
    @property
    def samples_per_iteration(self) -> int:
        return self.data.prompts_per_iteration * self.rollout.sampling.samples_per_prompt

    @property
    def uses_critic(self) -> bool:
        return self.ppo.algorithm == "ppo"

    @property
    def uses_labeler(self) -> bool:
        return any(s.kind == "labeler_direct" for s in self.reward.sources)

    @property
    def uses_gpus(self) -> bool:
        return self.learner.resources.num_gpus > 0

    @property
    def dist_backend(self) -> str:
        if self.learner.backend != "auto":
            return self.learner.backend
        return "nccl" if self.uses_gpus else "gloo"


def _cross_field_errors(c: RunConfig):
    labels = [s.label for s in c.reward.sources]
    if len(set(labels)) != len(labels):
        yield f"reward.sources: source names must be unique, got {labels}"
    if not any(s.weight for s in c.reward.sources):
        yield "reward.sources: at least one source needs a non-zero weight"
    if c.uses_labeler and (c.labeler.score_min, c.labeler.score_max) != (1, 10):
        yield (f"labeler.score_min/score_max: direct RLAIF rewards need the score range 1..10, "
               f"got {c.labeler.score_min}..{c.labeler.score_max}")
    if c.ppo.algorithm in ("grpo", "rloo") and c.rollout.sampling.samples_per_prompt < 2:
        yield f"rollout.sampling.samples_per_prompt: {c.ppo.algorithm} needs ≥ 2 samples per prompt"
    n = c.samples_per_iteration
    if n % c.ppo.minibatch_size:
        yield (f"ppo.minibatch_size: {c.ppo.minibatch_size} must divide the samples per iteration "
               f"({c.data.prompts_per_iteration} prompts × {c.rollout.sampling.samples_per_prompt} samples = {n})")
    if c.ppo.minibatch_size % c.learner.num_workers:
        yield (f"ppo.minibatch_size: {c.ppo.minibatch_size} must be divisible by learner.num_workers "
               f"({c.learner.num_workers}) for data parallelism")
    if c.kl.controller == "adaptive" and c.kl.target is None:
        yield "kl.target: the adaptive KL controller needs a target KL"
    if c.sync.backend == "nccl" and not (c.uses_gpus and c.rollout.resources.num_gpus > 0):
        yield "sync.backend: nccl needs GPUs on the learner and rollout roles (resources.num_gpus > 0)"
    sizes = {"rollout": c.rollout.num_actors, "labeler": c.labeler.num_actors, "reference": c.reference.num_actors,
             "learner": c.learner.num_workers}
    for k, f in enumerate(c.chaos.faults):
        if f.actor >= sizes[f.role]:
            yield f"chaos.faults.{k}.actor: {f.role} has {sizes[f.role]} actor(s), no index {f.actor}"
        if f.iteration > c.run.iterations:
            yield f"chaos.faults.{k}.iteration: the run has only {c.run.iterations} iterations"
    if c.learner.backend == "nccl" and not c.uses_gpus:
        yield "learner.backend: nccl needs learner.resources.num_gpus > 0"
    if c.pipeline.max_staleness and c.ppo.off_policy_correction == "none" and not c.pipeline.allow_uncorrected:
        yield (f"pipeline.max_staleness: {c.pipeline.max_staleness} trains on samples of older policies; set "
               f"ppo.off_policy_correction to tis or decoupled (or pipeline.allow_uncorrected: true to train them as on-policy)")


# --------------------------------------------------------------------------- loading


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{path}: {msg}" if path != "(top level)" or ": " not in msg else msg)
    return "\n".join(lines)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply dotted `key.path=value` overrides; values are parsed as YAML (`0.1`, `true`, `[a]`)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        key, value = item.split("=", 1)
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = _child(node, part, key)
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"--set {key}: {part} is not a section")
        if isinstance(node, list):
            node[_list_index(node, parts[-1], key)] = yaml.safe_load(value)
        else:
            node[parts[-1]] = yaml.safe_load(value)
    return raw


def _child(node, part: str, key: str):
    """One step of a dotted path: a section (created if missing) or a list item by index."""
    if isinstance(node, list):
        return node[_list_index(node, part, key)]
    return node.setdefault(part, {})


def _list_index(items: list, part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise ConfigError(f"--set {key}: {part!r} is not an index of a list of {len(items)} item(s)")
    return int(part)


def config_from_dict(raw: dict, source: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}:\n{_format_validation_error(err)}") from None


def read_raw_config(path: str | Path, overrides: list[str] | None = None) -> dict:
    """The run YAML as a plain dict with the dotted overrides applied (not yet validated)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return apply_overrides(raw, overrides or [])


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read, override and validate one run YAML. Relative local paths resolve against the CWD."""
    return config_from_dict(read_raw_config(path, overrides), str(path))


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def describe_schema(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
    """One line per field: dotted path, type, default and description."""
    lines = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = section_model(field.annotation)
        if ann is not None:
            lines.append(f"{path}:  {field.description or ann.__doc__ or ''}".rstrip())
            lines.extend(describe_schema(ann, path + "."))
            continue
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        lines.append(f"{path} = {default}  # {field.description or ''}")
    return lines


def section_model(annotation) -> type[BaseModel] | None:
    """The section model of a field typed `Section` or `Section | None`; None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0]
    return None
