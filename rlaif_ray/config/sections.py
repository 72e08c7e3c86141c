"""The sections every verb shares: the run itself, Ray, the models, the prompt data, and
what one actor reserves; plus the strict base every section derives from. The model and
prompt sections come in the shapes the verbs need: a verb's config holds only what it reads."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
    threads: int | None = Field(None, ge=1, description="Compute threads of each actor (torch's and vLLM's CPU threads). null: one per "
                                "core of cpu_affinity if given; in local mode, the node's cores shared among the actors that compute "
                                "at the same time as this role (rlaif_ray.cores.role_threads); on a cluster, Ray's default (num_cpus).")

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


class _Engines(_Strict):
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Dtype of every engine.")
    trust_remote_code: bool = Field(False, description="Passed to from_pretrained and vLLM.")


class PolicyModel(_Engines):
    """The model a verb trains or answers with (train-rm, dpo)."""

    policy: str = Field(..., description="Policy (and reference) model: HF hub name or local path.")


class LabelerModel(_Engines):
    """The AI labeler alone (label)."""

    labeler: str = Field(..., description="AI labeler model: HF hub name or local path.")


class ModelSection(PolicyModel, LabelerModel):
    """Policy and labeler (train, rejection-sampling, eval)."""


class PromptFormat(_Strict):
    """How a prompt record becomes the policy's input text (dpo reads only this)."""

    chat_template: bool = Field(False, description="Render each prompt with the policy tokenizer's chat template (user turn, assistant turn opened); "
                                "needed for prompts stored as chat messages [{role, content}, ...].")
    system_prompt: str | None = Field(None, description="System message put before every prompt (chat_template only; "
                                      "a prompt's own system message wins).")


class HeldOutPromptFormat(PromptFormat):
    """eval's prompt format: the held-out prompts come from eval.prompts."""

    max_prompt_tokens: int = Field(128, ge=1, description="Held-out prompts longer than this are truncated as training prompts are.")


class DataSection(PromptFormat):
    """The training prompts (train, rejection-sampling)."""

    source: str = Field(..., description="Prompts: a .jsonl/.json/.parquet file, a directory of Parquet, or an HF dataset name.")
    split: str = Field("train", description="Dataset split when `source` is an HF dataset name.")
    prompt_column: str = Field("prompt", description="Column holding the prompt text.")
    prompts_per_iteration: int = Field(8, ge=1, description="Distinct prompts per iteration (per PPO iteration, or per rejection-sampling round).")
    max_prompt_tokens: int = Field(128, ge=1, description="Prompts longer than this are truncated or dropped (counted).")
    long_prompts: Literal["truncate", "drop"] = Field("truncate", description="What to do with a prompt over max_prompt_tokens.")


class Sampling(_Strict):
    samples_per_prompt: int = Field(4, ge=1, description="Responses generated per prompt (the group size).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int = Field(-1, description="Top-k sampling; -1 disables.")
    max_new_tokens: int = Field(32, ge=1, description="Longest response, tokens.")
    stop: list[str] = Field(default_factory=list, description="Stop strings (eos always stops).")


class VerbConfig(_Strict):
    """What every verb's config holds: the run itself and how Ray is started or joined."""

    run: RunSection = Field(default_factory=RunSection, description="Run length, seed, checkpoints and fault tolerance.")
    ray: RayInit = Field(default_factory=RayInit, description="How Ray is started or joined.")

    @model_validator(mode="after")
    def _cross_field(self):
        errors = list(self.cross_field_errors())
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def cross_field_errors(self):
        """The rules that cross sections, one message (naming the field) per broken rule."""
        return iter(())
