"""One typed, validated config per verb.

A verb's run is one YAML file parsed into that verb's config type (`VERB_CONFIGS`): the
sections every verb shares (run, ray) plus only the ones the verb reads. Every default
lives in this package, every field has a one-line description (`rlaif-ray config schema
VERB` prints them), unknown keys are rejected (a key another verb reads is named as such),
and cross-field rules are checked before any actor starts. Errors name the field path:

    config error: ppo.clip: Input should be greater than 0

Modules: `sections` (what verbs share: run, ray, models, prompts, resources; `VerbConfig`),
`training` (the sections of the training roles: rollout, labeler, reference, learner, PPO,
KL, sync, pipeline, chaos), `verbs` (the sections only one verb reads, and the config types
of label, train-rm, dpo and eval), `run` (`TrainConfig` and `RejectionSamplingConfig`, which
start the training roles, and their cross-section rules), `loading` (YAML, overrides, schema).
"""

from rlaif_ray.config.loading import (VERB_CONFIGS, apply_overrides, config_from_dict, describe_schema, dump_config,
                                      infer_verb, load_config, read_raw_config, section_model)
from rlaif_ray.config.run import RejectionSamplingConfig, RolesConfig, TrainConfig
from rlaif_ray.config.sections import (DataSection, HeldOutPromptFormat, LabelerModel, ModelSection, PolicyModel,
                                       PromptFormat, RayInit, Resources, RunSection, Sampling, VerbConfig)
from rlaif_ray.config.training import (MOVED_MODULES, PROBE_BOUNDS, AnswerEngines, ChaosSection, Fault, KLSection,
                                       LabelerSection, LearnerSection, PipelineSection, PPOSection, ReferenceSection,
                                       RewardSection, RewardSource, RolloutSection, SyncSection, moved_function_error)
from rlaif_ray.config.verbs import (DPOConfig, DPOSection, EvalConfig, EvalSampling, EvalSection, HarmlessJudge,
                                    LabelConfig, LabelSection, RejectionSamplingSection, RewardModelConfig,
                                    RewardModelTrainSection)
from rlaif_ray.errors import ConfigError

__all__ = [
    "MOVED_MODULES", "PROBE_BOUNDS", "VERB_CONFIGS", "AnswerEngines", "ChaosSection", "ConfigError", "DPOConfig",
    "DPOSection", "DataSection", "EvalConfig", "EvalSampling", "EvalSection", "Fault", "HarmlessJudge",
    "HeldOutPromptFormat", "KLSection", "LabelConfig", "LabelSection", "LabelerModel", "LabelerSection",
    "LearnerSection", "ModelSection", "PPOSection", "PipelineSection", "PolicyModel", "PromptFormat", "RayInit",
    "ReferenceSection", "RejectionSamplingConfig", "RejectionSamplingSection", "Resources", "RewardModelConfig",
    "RewardModelTrainSection", "RewardSection", "RewardSource", "RolesConfig", "RolloutSection", "RunSection",
    "Sampling", "SyncSection", "TrainConfig", "VerbConfig", "apply_overrides", "config_from_dict", "describe_schema",
    "dump_config", "infer_verb", "load_config", "moved_function_error", "read_raw_config", "section_model",
]
