"""Connecting to Ray: a private local instance, or the cluster a job runs in."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager

import ray

from rlaif_ray.config import RayInit
from rlaif_ray.driver.logs import STREAM, RunLogs

# Engine settings every actor needs before it imports its engine. Set here, in one place,
# and passed as the actors' runtime_env (not read anywhere else):
# - VLLM_ENABLE_V1_MULTIPROCESSING=0: vLLM's engine core stays in the actor process.
# - TOKENIZERS_PARALLELISM=false: Rust tokenizer threads fight the engines for the few cores.
# - TRANSFORMERS_VERBOSITY=error: per-actor load reports would bury the run's own output.
ACTOR_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "TOKENIZERS_PARALLELISM": "false",
             "TRANSFORMERS_VERBOSITY": "error"}


def actor_env(ray_cfg: RayInit) -> dict[str, str]:
    return {**ACTOR_ENV, **ray_cfg.env_vars}


@contextmanager
def ray_session(ray_cfg: RayInit, logs: RunLogs = STREAM):
    """Start or join Ray for the run; only what this call started is shut down after.

    address null + no RAY_ADDRESS: a private local Ray (own temp dir; never attaches to a
    cluster somebody else started on this machine). Inside a Ray job (RAY_ADDRESS is set)
    or with an explicit address: join that cluster.

    With a log folder (`logs.dir`, the default of every verb) the driver's own output goes to
    logs/driver.log for the whole session, Ray's start-up notices included; what Ray streams
    from its workers (log_to_driver) lands there too. Actor output goes to the actors' files
    (`ActorPool`), so the terminal keeps only the run's own lines.
    """
    with logs.capture_driver():
        if ray.is_initialized():
            yield
            return
        address = ray_cfg.address or ("auto" if os.environ.get("RAY_ADDRESS") else None)
        if address:
            from rlaif_ray.job_env import without_job_env_vars  # in a job: its env_vars are inherited; Ray refuses one set twice
            ray.init(address=address, runtime_env={"env_vars": without_job_env_vars(actor_env(ray_cfg))}, log_to_driver=True)
        else:
            temp_dir = ray_cfg.temp_dir or tempfile.mkdtemp(prefix="rlaif-ray-")
            ray.init(address="local", num_cpus=ray_cfg.num_cpus, include_dashboard=False,
                     object_store_memory=ray_cfg.object_store_mib * 2**20, _temp_dir=temp_dir,
                     runtime_env={"env_vars": actor_env(ray_cfg)}, log_to_driver=True)
        try:
            yield
        finally:
            ray.shutdown()
