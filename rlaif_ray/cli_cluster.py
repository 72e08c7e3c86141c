"""The cluster verbs of the `rlaif-ray` command: `cluster validate`, `submit` (a training run as
a Ray job) and `job status|logs|stop`."""

from __future__ import annotations

import argparse
import sys

from rlaif_ray.config import load_config
from rlaif_ray.errors import EXIT_USAGE


def add_config_args(p: argparse.ArgumentParser) -> None:
    """--config FILE and repeatable --set KEY=VALUE (every verb that reads a run YAML)."""
    p.add_argument("--config", required=True, help="Run YAML (e.g. configs/local.yaml).")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="Dotted override, value parsed as YAML (repeatable): --set ppo.clip=0.1")


def add_cluster_commands(sub) -> None:
    """`cluster validate`, `submit`, `job status|logs|stop`."""
    p = sub.add_parser("cluster", help="Check cluster files offline.")
    csub = p.add_subparsers(dest="cluster_command", required=True)
    v = csub.add_parser("validate", help="Validate a Ray cluster YAML or KubeRay manifest (and a run's fit on it).")
    v.add_argument("file")
    v.add_argument("--run-config", default=None, help="Run YAML whose roles must fit the cluster's node types.")
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="Override in the run config (repeatable).")

    p = sub.add_parser("submit", help="Submit a training run to a Ray cluster as a Ray job.")
    p.add_argument("--address", default=None, help="Job API of the cluster, e.g. http://127.0.0.1:8265 (default: $RAY_ADDRESS).")
    add_config_args(p)
    p.add_argument("--run-dir", default=None, help="Run dir on the cluster (absolute: the working_dir is temporary).")
    p.add_argument("--python", default="python", help="The job's interpreter on the cluster (default: `python` on the "
                   "PATH of the node running the driver); it must have the project installed.")
    p.add_argument("--no-wait", action="store_true", help="Print the job id and return; don't follow the logs.")

    p = sub.add_parser("job", help="Status, logs or stop of a submitted job.")
    jsub = p.add_subparsers(dest="job_command", required=True)
    for name, text in (("status", "Print the job's status."), ("logs", "Print the job's log."),
                       ("stop", "Stop the job and wait until it has stopped.")):
        j = jsub.add_parser(name, help=text)
        j.add_argument("job_id")
        j.add_argument("--address", default=None, help="Job API of the cluster (default: $RAY_ADDRESS).")
        if name == "logs":
            j.add_argument("--follow", action="store_true", help="Keep streaming until the job ends.")


def _job_client():
    """The job-client module, imported only once Ray's auth mode is set."""
    import os

    # Ray 2.60 turns token auth on for the clusters it starts, and a client process that did
    # not start the cluster must be in token mode *before* `import ray`, or every request is
    # refused with 401. The one place this is set; an explicit RAY_AUTH_MODE is respected.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    from rlaif_ray import job_client

    return job_client


def _fail(message: str) -> int:
    print(f"rlaif-ray: {message}", file=sys.stderr)
    return EXIT_USAGE


def cmd_cluster(args) -> int:
    from rlaif_ray.cluster_check import validate_cluster_file

    run_cfg = load_config(args.run_config, args.overrides) if args.run_config else None
    errors = validate_cluster_file(args.file, run_cfg)
    if errors:
        return _fail(f"{args.file}:\n" + "\n".join(f"  {e}" for e in errors))
    fit = f" (run config {args.run_config} fits)" if args.run_config else ""
    print(f"OK: {args.file}{fit}")
    return 0


def cmd_submit(args) -> int:
    return _job_client().run_submit(args)


def cmd_job(args) -> int:
    jc = _job_client()
    try:
        client = jc.connect(args.address)
        if args.job_command == "status":
            st, message = jc.status(client, args.job_id)
            print(f"{st}" + (f": {message}" if message else ""))
        elif args.job_command == "logs":
            if args.follow:
                st = jc.follow(client, args.job_id)
                print(f"rlaif-ray: job {args.job_id} {st}", file=sys.stderr)
            else:
                print(jc.logs(client, args.job_id), end="")
        else:
            st = jc.stop(client, args.job_id)
            print(st)
    except jc.JobClientError as err:
        return _fail(str(err))
    return 0


CLUSTER_COMMANDS = {"cluster": cmd_cluster, "submit": cmd_submit, "job": cmd_job}
