"""The `rlaif-ray` command.

    rlaif-ray train --config FILE [--run-dir DIR] [--set key=value ...] [--resume | --overwrite]
    rlaif-ray make-tiny-models DIR [--seed N]
    rlaif-ray config schema | config validate FILE [--set ...]

Errors a user can fix (bad config, missing files, a refused run dir) print one clear
message and exit 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from rlaif_ray.config import ConfigError, describe_schema, dump_config, load_config

EXIT_USAGE = 2


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="Run YAML (e.g. configs/local.yaml).")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="Dotted override, value parsed as YAML (repeatable): --set ppo.clip=0.1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlaif-ray", description="Scalable RLAIF on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="Run PPO with AI feedback (local mode, or inside a Ray job).")
    p.add_argument("--config", help="Run YAML (e.g. configs/local.yaml); with --resume, defaults to RUN_DIR/config.yaml.")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="Dotted override, value parsed as YAML (repeatable): --set ppo.clip=0.1")
    p.add_argument("--run-dir", default=None, help="Where metrics and checkpoints go (default runs/<run.name>).")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="Continue the run in RUN_DIR from its last checkpoint (same prompts order and numbering).")
    g.add_argument("--overwrite", action="store_true", help="Replace whatever run is in --run-dir.")
    p.add_argument("--no-progress", action="store_true", help="No progress bar (logs only).")

    p = sub.add_parser("make-tiny-models", help="Build the tiny offline policy/labeler/RM models and toy data.")
    p.add_argument("dir")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("config", help="Inspect or validate run configs.")
    csub = p.add_subparsers(dest="config_command", required=True)
    csub.add_parser("schema", help="Every field with its default and description.")
    v = csub.add_parser("validate", help="Validate a run YAML and print it with defaults filled in.")
    v.add_argument("file")
    v.add_argument("--set", dest="overrides", action="append", default=[])
    return parser


def cmd_train(args) -> int:
    from pathlib import Path

    from rlaif_ray.driver.run import train_run

    if args.resume:
        run_dir = Path(args.resume)
        cfg = load_config(args.config or run_dir / "config.yaml", args.overrides)
    elif args.config:
        cfg = load_config(args.config, args.overrides)
        run_dir = Path(args.run_dir or f"runs/{cfg.run.name}")
    else:
        raise ConfigError("train: give --config FILE (or --resume RUN_DIR)")
    summary = train_run(cfg, run_dir, resume=bool(args.resume), overwrite=args.overwrite,
                        progress=not args.no_progress)
    print(f"done: {summary['iterations']} iterations in {run_dir}; mean reward first 3 "
          f"{summary['reward_first']:+.3f} ± {summary['reward_first_se']:.3f} → last 3 "
          f"{summary['reward_last']:+.3f} ± {summary['reward_last_se']:.3f}; final KL {summary['kl_last']:.3f}; "
          f"{summary['seconds_per_iteration']:.2f} s/iteration")
    return 0


def cmd_make_tiny_models(args) -> int:
    from rlaif_ray.tiny_models import ensure_tiny_models

    paths = ensure_tiny_models(args.dir, seed=args.seed)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def cmd_config(args) -> int:
    if args.config_command == "schema":
        print("\n".join(describe_schema()))
        return 0
    print(dump_config(load_config(args.file, args.overrides)), end="")
    return 0


COMMANDS = {"train": cmd_train, "make-tiny-models": cmd_make_tiny_models, "config": cmd_config}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    from rlaif_ray.data import DataError
    from rlaif_ray.run_dir import RunDirError, RunStopped

    try:
        return COMMANDS[args.command](args)
    except (ConfigError, DataError, RunDirError, FileNotFoundError) as err:
        print(f"rlaif-ray: {err}", file=sys.stderr)
        return EXIT_USAGE
    except RunStopped as err:
        print(f"rlaif-ray: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
