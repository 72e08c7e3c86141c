"""One typed, validated config per run.

A run is one YAML file parsed into `RunConfig`. Every default lives in this package, every
field has a one-line description (`rlaif-ray config schema` prints them), unknown keys are
rejected, and cross-field rules are checked before any actor starts. Errors name the field
path:

    config error: ppo.clip: Input should be greater than 0

Modules: `sections` (what every verb shares: run, ray, model, data, resources), `training`
(the sections of a training run: roles, PPO, KL, sync, pipeline, chaos), `verbs` (the
sections only one verb reads: eval, rejection sampling, train-rm, dpo, label), `run`
(`RunConfig` and its cross-section rules), `loading` (YAML, overrides, schema).
"""

from rlaif_ray.config.loading import (apply_overrides, config_from_dict, describe_schema, dump_config, load_config,
                                      read_raw_config, section_model)
from rlaif_ray.config.run import RunConfig
from rlaif_ray.config.sections import DataSection, ModelSection, RayInit, Resources, RunSection, Sampling
from rlaif_ray.config.training import (MOVED_MODULES, PROBE_BOUNDS, ChaosSection, Fault, KLSection, LabelerSection,
                                       LearnerSection, PipelineSection, PPOSection, ReferenceSection, RewardSection,
                                       RewardSource, RolloutSection, SyncSection, moved_function_error)
from rlaif_ray.config.verbs import (DPOSection, EvalSampling, EvalSection, HarmlessJudge, LabelSection,
                                    RejectionSamplingSection, RewardModelTrainSection)
from rlaif_ray.errors import ConfigError

__all__ = [
    "MOVED_MODULES", "PROBE_BOUNDS", "ChaosSection", "ConfigError", "DPOSection", "DataSection", "EvalSampling",
    "EvalSection", "Fault", "HarmlessJudge", "KLSection", "LabelSection", "LabelerSection", "LearnerSection",
    "ModelSection", "PPOSection", "PipelineSection", "RayInit", "ReferenceSection", "RejectionSamplingSection", "Resources",
    "RewardModelTrainSection", "RewardSection", "RewardSource", "RolloutSection", "RunConfig", "RunSection",
    "Sampling", "SyncSection", "apply_overrides", "config_from_dict", "describe_schema", "dump_config",
    "load_config", "moved_function_error", "read_raw_config", "section_model",
]
