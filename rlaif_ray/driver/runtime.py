"""Connecting to Ray: a private local instance, or the cluster a job runs in."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager

import ray
from ray._private import ray_constants

from rlaif_ray.config import RayInit
from rlaif_ray.driver.logs import STREAM, RunLogs
from rlaif_ray.driver.watchdog import Watchdog

# A short parent for the private temp dir: Ray's Unix socket paths under it must stay within
# ~107 characters, and $TMPDIR can be long (macOS).
SHORT_TMP = "/tmp"
TEMP_PREFIX = "rlaif-ray-"
RAY_LOGS_SUBDIR = "ray"  # LOG_DIR/ray/<session>/: Ray's own logs, kept when a run failed
LOOPBACK = "127.0.0.1"
# No idle workers started ahead: every actor of a run has its own runtime_env (its log file,
# its threads), so Ray's prestarted default workers are never used, and each costs ~1.4
# CPU-s of imports while the roles start (2 of them on a 2-core node).
NO_PRESTART = {"enable_worker_prestart": False, "prestart_worker_first_driver": False}

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
            with _private_local_ray(ray_cfg, logs):
                yield
            return
        try:
            yield
        finally:
            ray.shutdown()


@contextmanager
def _private_local_ray(ray_cfg: RayInit, logs: RunLogs):
    """A local Ray of this driver's own, guarded by a `Watchdog` (driver/watchdog.py): however
    the driver ends, SIGKILL included, no process of this Ray stays behind and the temp dir we
    created goes; when the run failed, Ray's session logs are first kept in LOG_DIR/ray/
    (with `--verbose` there is no log folder: they go with the temp dir)."""
    temp_dir = ray_cfg.temp_dir or tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=_short_tmp())
    watchdog = Watchdog(temp_dir, owned=ray_cfg.temp_dir is None,
                        keep_logs_in=logs.dir / RAY_LOGS_SUBDIR if logs.dir else None)
    failed = True
    try:
        with _loopback_node():
            ray.init(address="local", num_cpus=ray_cfg.num_cpus, include_dashboard=False,
                     object_store_memory=ray_cfg.object_store_mib * 2**20, _temp_dir=temp_dir,
                     _node_ip_address=LOOPBACK, runtime_env={"env_vars": actor_env(ray_cfg)},
                     log_to_driver=True, _system_config=NO_PRESTART)
        try:
            yield
        finally:
            ray.shutdown()
        failed = False
    finally:
        watchdog.finish(failed)


@contextmanager
def _loopback_node():
    """Give the private node the loopback address, so that GCS, raylet, dashboard, both
    agents and every worker listen on 127.0.0.1 only instead of on all interfaces.

    Why a patch: Ray 2.60 turns `_node_ip_address="127.0.0.1"` into the machine's outward IP
    (`services.resolve_ip_for_localhost`) unless `ray_constants.ENABLE_RAY_CLUSTER` is false,
    which Ray reads once at import from RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER (false by default
    only on macOS and Windows, where Ray keeps a local node on loopback for this reason).
    Only this ray.init sees the change: joining a cluster is untouched, and the processes
    started here get the address on their command lines."""
    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def _short_tmp() -> str | None:
    return SHORT_TMP if os.path.isdir(SHORT_TMP) else None
