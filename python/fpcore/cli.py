"""fpcore-train: descriptor pre-training and property fine-tuning of crystal GNNs.

  fpcore-train pretrain  [--config cfg.yaml] [--set key=value ...]      node-level fingerprint regression
  fpcore-train finetune  [--config cfg.yaml] --from runs/pretrain/best.pt
  fpcore-train finetune  --from pretrained:schnet-ead-mp62k             from a pre-trained model shipped with fpcore
  fpcore-train pretrained                                                list the shipped pre-trained models
  fpcore-train train     [--config cfg.yaml]                             fine-tuning from scratch (baseline)
  fpcore-train evaluate  runs/x/best.pt data.extxyz                      MAE, RMSE, R2 on a labelled set
  fpcore-train predict   runs/x/best.pt structures.extxyz -o pred.csv
  fpcore-train convert   old.pt new.pt                                  checkpoint of an older format -> current
  fpcore-train experiment --config experiments/paper.yaml --scale cpu   pre-training arms vs. baseline, tasks x seeds
  fpcore-train compare                                                   bundled default: finetune vs. train, 3 seeds

The same command runs under `torchrun --nproc_per_node=N fpcore-train ...` (DDP).
An expected failure (bad input, config, file or folder) prints one line `fpcore-train: error: ...` and exits with
status 2; --debug (or FPCORE_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

from ._io import atomic_write_json, check_writable
from .pretrained import resolve as resolve_checkpoint

KIND = {"pretrain": "pretrain", "finetune": "finetune", "train": "finetune"}
DEFAULT_FROM = "runs/pretrain/best.pt"


DEBUG_ENV = "FPCORE_DEBUG"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    # --debug is accepted before or after the command; SUPPRESS keeps a subcommand's default from hiding the other.
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help=f"show the Python traceback of an error (also: {DEBUG_ENV}=1)",
    )
    p = argparse.ArgumentParser(
        prog="fpcore-train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
        parents=[debug],
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (
        ("pretrain", "pre-train a backbone on fpcore fingerprints"),
        ("finetune", "fine-tune a pre-trained backbone on properties"),
        ("train", "train on properties from scratch (the baseline)"),
    ):
        s = sub.add_parser(name, help=text, description=text, parents=[debug])
        s.add_argument(
            "--config",
            help="YAML file with sections data, model, descriptor, optim, run (layered over the packaged defaults)",
        )
        s.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override one config value, e.g. --set optim.lr=1e-3 (YAML-parsed; repeatable)",
        )
        s.add_argument("--run-dir", help="run folder (default: run.dir, else runs/<command>)")
        s.add_argument("--resume", action="store_true", help="continue the run folder from its last.pt")
        s.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
        if name == "finetune":
            s.add_argument(
                "--from",
                dest="init_from",
                default=None,
                help=f"pre-training checkpoint, or pretrained:<name> for a shipped model (`fpcore-train pretrained` "
                f"lists them; default: {DEFAULT_FROM})",
            )
    sub.add_parser(
        "pretrained", help="list the pre-trained models shipped with fpcore (for finetune --from pretrained:<name>)"
    )
    e = sub.add_parser("evaluate", help="metrics of a fine-tuned checkpoint on a labelled data set", parents=[debug])
    e.add_argument("checkpoint")
    e.add_argument("data", nargs="+", help="structures with labels (any fpcore.data.load_dataset source)")
    e.add_argument("-o", "--output", help="write the metrics as JSON here")
    q = sub.add_parser("predict", help="predictions of a fine-tuned checkpoint, as CSV", parents=[debug])
    q.add_argument("checkpoint")
    q.add_argument("data", nargs="+", help="structures (any fpcore.data.load_dataset source)")
    q.add_argument("-o", "--output", required=True, help="CSV file: id, one column per target")
    for s in (e, q):
        s.add_argument("--device", default="auto")
        s.add_argument("--batch-size", type=_positive_int, default=32)
    c = sub.add_parser("convert", help="rewrite a checkpoint of an older format in the current one", parents=[debug])
    c.add_argument("source")
    c.add_argument("destination")
    x = sub.add_parser(
        "experiment", help="the paper's protocol: pre-training arms vs. baseline over tasks and seeds", parents=[debug]
    )
    x.add_argument("--config", default="experiments/paper.yaml", help="experiment YAML (default: %(default)s)")
    x.add_argument("--scale", help="one of the config's scales (e.g. cpu, paper)")
    x.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an experiment key, e.g. --set seeds=[111] --set finetune.trainer.optim.epochs=5",
    )
    x.add_argument("--out", help="results folder (default: the config's out)")
    x.add_argument("--data-root", help="folder the data paths are relative to (default: the config's data_root)")
    x.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: write the reports from the runs finished so far and list the missing ones",
    )
    c = sub.add_parser(
        "compare",
        help="the bundled default: fine-tuned vs. trained from scratch, 3 seeds, identical budgets (~5 min on 2 cores)",
        description="Pre-trains once (pretrain.yaml), then per seed trains from scratch and fine-tunes (finetune.yaml) "
        "on the same split; prints the test-MAE table and writes compare.png. Resumes an interrupted comparison.",
    )
    c.add_argument("--out", default=None, help="results folder (default: results/first_run)")
    c.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an experiment key, e.g. --set seeds=[1,2,3,4,5] --set finetune.trainer.optim.epochs=40",
    )
    return p


def _compare(args) -> int:
    from .experiments.compare import compare_config, run_compare

    summary = run_compare(compare_config(args.set, out=args.out))
    if _is_main():
        print(summary["table"], end="")
        for what, path in summary["files"].items():
            print(f"[fpcore-compare]   {what}: {path}")
    return 0


def _experiment(args) -> int:
    from .experiments import load_experiment_config, run_experiment

    config = load_experiment_config(
        args.config, scale=args.scale, overrides=args.set, data_root=args.data_root, out=args.out
    )
    summary = run_experiment(config, report_only=args.report_only)
    missing = summary.get("runs", {}).get("missing", [])
    if missing and _is_main():
        print(
            f"[fpcore-experiment] report of an unfinished experiment: {len(missing)} of "
            f"{summary['runs']['planned']} runs missing (first: {missing[0]})"
        )
    if _is_main():
        for arm, avg in summary.get("average_improvement", {}).items():
            print(
                f"[fpcore-experiment] {arm}: average MAE reduction {avg['mean_pct']:+.1f}% over {avg['n_tasks']} task(s)"
            )
        for what, path in summary.get("files", {}).items():
            print(f"[fpcore-experiment]   {what}: {path}")
    return 0


def _train(args) -> int:
    from .training import load_checkpoint, resolve_config, run_training

    kind = KIND[args.command]
    packaged = "pretrain" if kind == "pretrain" else "finetune"
    overrides = list(args.set)
    if args.run_dir:
        overrides.append(f"run.dir={args.run_dir}")
    config = resolve_config(packaged, args.config, overrides)
    run_dir = pathlib.Path(config["run"]["dir"] or f"runs/{args.command}")
    init_from = None
    if args.resume:
        if args.config:
            raise ValueError("--resume uses the config saved in the run; change values with --set instead of --config")
        last = run_dir / "last.pt"
        payload = load_checkpoint(last)
        config = resolve_config(None, None, overrides, base=payload["config"])
    elif args.command == "finetune":
        init_from = args.init_from or DEFAULT_FROM
        if not resolve_checkpoint(init_from).is_file():
            raise FileNotFoundError(
                f"pre-training checkpoint not found: {init_from} (run `fpcore-train pretrain` first or pass --from)"
            )
    summary = run_training(
        kind, config, run_dir=run_dir, init_from=init_from, resume=args.resume, overwrite=args.overwrite
    )
    if summary is not None and _is_main():
        print(
            f"[fpcore-train] done: best epoch {summary['best_epoch']} (val MAE {summary['best_val_mae']:.4g})"
            + (f", test MAE {summary['test_mae']:.4g}" if "test_mae" in summary else "")
        )
        print(f"[fpcore-train] run folder: {summary['run_dir']}")
        for what, path in summary["files"].items():
            print(f"[fpcore-train]   {what}: {path}")
    return 0


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _data_source(items):
    return items[0] if len(items) == 1 else items


def _pretrained(args) -> int:
    from . import pretrained

    names = pretrained.available()
    if not names:
        print("no pre-trained models are bundled with this fpcore")
        return 0
    for name in names:
        card = pretrained.card(name)
        bb = card["backbone"]
        fps = "+".join(fp["name"] for fp in card["targets"]["fingerprints"])
        print(
            f"{name}: {bb['class']} ({card['parameters']:,} parameters, cutoff {bb['kwargs'].get('cutoff')} A), "
            f"pre-trained on {fps} of {card['corpus']['n_structures']:,} structures, {card['epochs']} epochs, "
            f"val MAE {card['val_mae']:.4g}"
        )
        print(f"  use: fpcore-train finetune --from pretrained:{name}   card: {pretrained.HERE / (name + '.md')}")
    return 0


def _convert(args) -> int:
    from .training.checkpoint import convert_checkpoint

    convert_checkpoint(args.source, args.destination)
    print(f"converted {args.source} -> {args.destination}")
    return 0


def _evaluate(args) -> int:
    from .training import evaluate

    if args.output:
        check_writable(args.output)  # before the work, not after it
    metrics = evaluate(args.checkpoint, _data_source(args.data), device=args.device, batch_size=args.batch_size)
    for name, m in metrics.items():
        print(f"{name}: MAE {m['mae']:.6g}  RMSE {m['rmse']:.6g}  R2 {m['r2']:.4f}  (n={m['n']})")
    if args.output:
        atomic_write_json(args.output, metrics)
        print(f"metrics written to {args.output}")
    return 0


def _predict(args) -> int:
    from .training import predict

    out = predict(args.checkpoint, _data_source(args.data), args.output, device=args.device, batch_size=args.batch_size)
    print(f"predictions written to {out}")
    return 0


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Failures caused by the input (data, config, files, folders): reported in one line, exit status 2."""
    from .training import CheckpointError, ConfigError
    from .training.run_folder import RunFolderError

    return (ConfigError, CheckpointError, RunFolderError, OSError, ValueError, TypeError, KeyError, EOFError)


def _one_line(err: BaseException) -> str:
    if isinstance(err, KeyError) and type(err).__str__ is KeyError.__str__ and err.args:
        text = str(err.args[0])  # KeyError's str() is the repr of its argument
    elif isinstance(err, OSError) and type(err).__str__ is OSError.__str__ and err.strerror:
        text = err.strerror + (f": {err.filename}" if err.filename else "")
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    handlers = {
        "pretrain": _train,
        "finetune": _train,
        "train": _train,
        "evaluate": _evaluate,
        "predict": _predict,
        "experiment": _experiment,
        "convert": _convert,
        "compare": _compare,
        "pretrained": _pretrained,
    }
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("fpcore-train: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - every error ends in one line unless --debug asks for the traceback
        if debug:
            raise
        if isinstance(err, _expected_errors()):
            print(f"fpcore-train: error: {_one_line(err)}", file=sys.stderr)
            return 2
        print(
            f"fpcore-train: internal error: {type(err).__name__}: {_one_line(err)} (this is a bug: please report it "
            f"with the traceback from --debug or {DEBUG_ENV}=1)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
