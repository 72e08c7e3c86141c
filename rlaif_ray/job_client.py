"""Submitting runs to a Ray cluster as Ray jobs, and watching them.

    rlaif-ray submit --address http://127.0.0.1:8265 --config configs/cluster-gpu.yaml [--set k=v ...] [--python PY]

is `ray job submit --working-dir . -- python -m jobs.train_ppo --config ...` with the packaging
a run needs: the repo root is the job's working_dir (minus the virtualenv, caches, runs and
.git, but with the local files the config names: `rlaif_ray.job_package`), PYTHONPATH points
into it (working_dir alone does not make `rlaif_ray`, `actors` and `jobs` importable on the
cluster's workers), the config's `ray.env_vars` reach the driver and every actor, and the
entrypoint names its interpreter (`--python`, default `python` on the cluster's PATH; the job
checks it has the project's packages first: `rlaif_ray.job_env`).

The run config is validated here first, so a bad field fails on the laptop, not minutes
later on the cluster. Every failure a user can fix (unreachable address, missing or refused
token, unknown job id, a config path the job could not read) is a one-line error.

Ray's token auth: the CLI sets RAY_AUTH_MODE=token before this module imports Ray (see
`rlaif_ray.cli`); the token itself is RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH, else
~/.ray/auth_token (Ray's own order of precedence).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rlaif_ray.config import ConfigError, load_config
from rlaif_ray.job_package import IGNORE_GITIGNORE_ENV, package_for
from rlaif_ray.errors import JobClientError

REPO_ROOT = Path(__file__).resolve().parent.parent

# How often a job's status is polled while waiting for it to settle; the job API is cheap.
POLL_S = 0.5


def normalize_address(address: str | None) -> str:
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise JobClientError("--address: required (or set RAY_ADDRESS), e.g. http://127.0.0.1:8265")
    return address if "://" in address else f"http://{address}"


def token_source() -> str | None:
    """Where Ray would read the token from, or None when there is none."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return f"RAY_AUTH_TOKEN_PATH={path}"
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() and default.read_text().strip() else None


def _check_token_path() -> None:
    # Ray aborts the process (no exception) on an unreadable or empty RAY_AUTH_TOKEN_PATH.
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path and not os.environ.get("RAY_AUTH_TOKEN"):
        p = Path(path).expanduser()
        if not p.is_file() or not p.read_text().strip():
            raise JobClientError(f"RAY_AUTH_TOKEN_PATH={path}: no token there (missing or empty file)")


@contextmanager
def job_api_errors(address: str):
    """Turn the job SDK's exceptions into one-line `JobClientError`s."""
    import aiohttp
    import requests
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as err:
        text = str(getattr(err, "message", err))
        if "Forbidden" in text:
            raise JobClientError(f"{address} refused the token from {token_source()} (403): it is not this "
                                 f"cluster's token; get it on the head with `ray get-auth-token`") from None
        if "Unauthorized" in text:
            raise JobClientError(f"{address} requires a Ray auth token (401) but RAY_AUTH_MODE is "
                                 f"{os.environ.get('RAY_AUTH_MODE')!r}; set RAY_AUTH_MODE=token and the token "
                                 f"(RAY_AUTH_TOKEN=$(ray get-auth-token) on the head)") from None
        # Raised before any request: token mode, but no token anywhere Ray looks.
        raise JobClientError("no Ray auth token: set RAY_AUTH_TOKEN (on the head: `ray get-auth-token`), "
                             "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token; for a cluster without token auth "
                             "set RAY_AUTH_MODE=disabled") from None
    except (ConnectionError, requests.exceptions.ConnectionError, aiohttp.ClientConnectionError) as err:
        raise JobClientError(f"cannot reach Ray's job API at {address} ({type(err).__name__}); is the cluster up "
                             f"and its dashboard port forwarded (ray dashboard CLUSTER.yaml / kubectl port-forward)?") from None
    except RuntimeError as err:
        if isinstance(err, JobClientError):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise JobClientError(f"{address}: {first}") from None


def connect(address: str | None):
    """A `JobSubmissionClient` for the cluster's job API (checks reachability and the token)."""
    address = normalize_address(address)
    _check_token_path()
    from ray.job_submission import JobSubmissionClient

    with job_api_errors(address):
        return JobSubmissionClient(address)


# --------------------------------------------------------------------------- what is submitted


@dataclass
class Submission:
    entrypoint: str
    runtime_env: dict
    size_bytes: int = 0
    warnings: list[str] = field(default_factory=list)


def build_submission(config: str | Path, overrides: list[str], run_dir: str | None, python: str = "python",
                     repo_root: Path = REPO_ROOT) -> Submission:
    """What a training job is submitted with; the config and the files it names are checked first."""
    cfg = load_config(config, overrides)
    config_path = Path(config).resolve()
    try:
        rel = config_path.relative_to(repo_root.resolve())
    except ValueError:
        raise ConfigError(f"--config {config}: must be a file inside {repo_root} "
                          f"(the repo is the job's working_dir; nothing else is uploaded)") from None
    package = package_for(cfg.model_dump(mode="json"), rel.as_posix(), repo_root)
    args = [python, "-m", "jobs.train_ppo", "--config", rel.as_posix()]
    for item in overrides:
        args += ["--set", item]
    warnings = list(package.warnings)
    if run_dir:
        args += ["--run-dir", run_dir]
        if not Path(run_dir).is_absolute():
            warnings.append(f"--run-dir {run_dir} is relative: it lands in the job's temporary copy of the repo "
                            f"on the cluster; give an absolute path")
    env_vars = dict(cfg.ray.env_vars)
    # The job's working directory is the unpacked repo: "." makes its packages importable.
    env_vars["PYTHONPATH"] = ":".join(p for p in (".", env_vars.get("PYTHONPATH")) if p)
    runtime_env = {"working_dir": str(repo_root), "excludes": package.excludes, "env_vars": env_vars}
    return Submission(shlex.join(args), runtime_env, package.size_bytes, warnings)


def submit(client, entrypoint: str, runtime_env: dict, metadata: dict | None = None) -> str:
    # The excludes are complete (.gitignore already applied, named files kept): Ray must not
    # re-apply .gitignore, or git-ignored files the config names (.cache/...) stay behind.
    os.environ[IGNORE_GITIGNORE_ENV] = "1"
    with job_api_errors(client.get_address()):
        return client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, metadata=metadata or {})


def run_submit(args) -> int:
    """`rlaif-ray submit`: exit 0 if the job SUCCEEDED (or --no-wait), 1 if not, 2 on a usage error."""
    def say(message: str) -> None:
        print(f"rlaif-ray: {message}", file=sys.stderr, flush=True)

    try:
        sub = build_submission(args.config, args.overrides, args.run_dir, python=args.python)
        for warning in sub.warnings:
            say(f"warning: {warning}")
        client = connect(args.address)
        job_id = submit(client, sub.entrypoint, sub.runtime_env, metadata={"rlaif_config": args.config})
        print(job_id, flush=True)
        address = client.get_address()
        say(f"submitted {job_id} to {address} ({sub.size_bytes / 2**20:.1f} MiB working_dir): {sub.entrypoint}")
        if args.no_wait:
            say(f"follow with `rlaif-ray job logs {job_id} --follow --address {address}`")
            return 0
        try:
            final = follow(client, job_id)
        except KeyboardInterrupt:
            print(file=sys.stderr)
            say(f"stopped following; the job goes on (rlaif-ray job stop {job_id} --address {address})")
            return 130
        _, message = status(client, job_id)
    except JobClientError as err:
        say(str(err))
        return 2
    say(f"job {job_id} {final}" + (f": {message}" if message and final != "SUCCEEDED" else ""))
    return 0 if final == "SUCCEEDED" else 1


# --------------------------------------------------------------------------- watching a job


def status(client, job_id: str) -> tuple[str, str]:
    """(status name, message) of a job."""
    with job_api_errors(client.get_address()):
        info = client.get_job_info(job_id)
    return str(info.status.value), info.message or ""


def logs(client, job_id: str) -> str:
    with job_api_errors(client.get_address()):
        return client.get_job_logs(job_id)


def follow(client, job_id: str, out=sys.stdout) -> str:
    """Stream the job's log to `out` until the job ends; return its final status name."""
    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    with job_api_errors(client.get_address()):
        try:
            asyncio.run(tail())
        except RuntimeError:
            # The log websocket dropped (e.g. the head restarted its dashboard): poll instead.
            _poll_logs(client, job_id, out)
        return wait(client, job_id, timeout_s=None)


def _poll_logs(client, job_id: str, out) -> None:
    shown = 0
    while True:
        text = client.get_job_logs(job_id)
        out.write(text[shown:])
        out.flush()
        shown = len(text)
        if client.get_job_status(job_id).is_terminal():
            return
        time.sleep(POLL_S)


def wait(client, job_id: str, timeout_s: float | None) -> str:
    """Poll until the job is terminal (or `timeout_s` passes); return the status name."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with job_api_errors(client.get_address()):
        while True:
            st = client.get_job_status(job_id)
            if st.is_terminal() or (deadline is not None and time.monotonic() > deadline):
                return str(st.value)
            time.sleep(POLL_S)


def stop(client, job_id: str, timeout_s: float = 60.0) -> str:
    """Ask the job to stop and wait until it has; return the final status name."""
    with job_api_errors(client.get_address()):
        client.stop_job(job_id)
    return wait(client, job_id, timeout_s)
