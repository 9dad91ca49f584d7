"""The ``visa`` command line.

Subcommands::

    visa eval revos   PRED_DIR --data-root ROOT [--split valid] [--out F.json] [--csv F.csv]
                                                [--mode visa|binary] [--workers N] [--quiet]
    visa eval mevis   PRED_DIR --data-root ROOT [--split valid_u] [--out F.json] [--csv F.csv] ...
    visa eval davis17 PRED_DIR --data-root ROOT [--split valid]   [--out F.json] [--csv F.csv] ...
    visa demo | visa infer ...   (provided by other modules, see below)

Other commands live in their own modules and are imported only when used, so ``visa eval`` never pays
for importing torch. A module registered in :data:`PLUGIN_COMMANDS` provides
``add_arguments(parser: argparse.ArgumentParser) -> None`` (optional) and
``main(args: argparse.Namespace) -> int | None``. If the module is not installed the command says so.

Bad input (a missing folder, a malformed dataset file, a bad argument) prints one message naming the
file or argument and what to do on stderr and exits with code 2, without a traceback. This holds for
plugin commands too: raise :class:`CliError`, ``FileNotFoundError`` or
:class:`~visa_lib.data.revos.DatasetFormatError` with a helpful message.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

#: ``command -> (module, one-line help)``; the module is imported only when the command runs.
PLUGIN_COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("visa_lib.demo", "run the end-to-end demo on the bundled sample data"),
    "infer": ("visa_lib.infer", "segment the object a text query refers to in a video"),
    "predict": ("visa_lib.predict", "predict every expression of a benchmark split, for visa eval"),
    "train": ("visa_lib.train.cli", "train VISA (toy on a CPU, full rung on one or many GPUs)"),
}

EXIT_USAGE = 2
_DEFAULT_SPLITS = {"revos": "valid", "mevis": "valid_u", "davis17": "valid"}


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def _add_eval_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="score PNG predictions on ReVOS, MeViS or Ref-DAVIS17")
    datasets = parser.add_subparsers(dest="dataset", metavar="{revos,mevis,davis17}")
    datasets.required = True
    helps = {
        "revos": "J, F, A, R for referring, reasoning, overall (= their mean) and no-target expressions",
        "mevis": "J, F, J&F over all expressions of a MeViS split",
        "davis17": "J, F, J&F over all expressions of Ref-DAVIS17",
    }
    for name, text in helps.items():
        sub = datasets.add_parser(name, help=text, description=text)
        sub.add_argument("pred_dir", type=Path, help="predictions as PRED_DIR/<video>/<exp_id>/<frame>.png")
        sub.add_argument("--data-root", type=Path, required=True, help="dataset folder (see docs)")
        sub.add_argument("--split", default=_DEFAULT_SPLITS[name], help="split (default: %(default)s)")
        sub.add_argument("--out", type=Path, help="write the summary and failures as JSON here")
        sub.add_argument("--csv", type=Path, help="write one row per expression as CSV here")
        if name == "revos":
            sub.add_argument(
                "--mode",
                choices=("visa", "binary"),
                default="visa",
                help="visa: VISA's raw 0/255 arithmetic for A and R (published numbers); binary: binarise",
            )
        sub.add_argument("--workers", type=int, help="processes (default: all cores; 1 = in-process)")
        sub.add_argument("--quiet", action="store_true", help="no progress bar")
        sub.set_defaults(handler=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from visa_lib.data.revos import DatasetFormatError
    from visa_lib.evaluate import evaluate_davis17, evaluate_mevis, evaluate_revos

    if args.workers is not None and args.workers < 1:
        raise CliError(f"--workers must be >= 1, got {args.workers}")
    if not args.pred_dir.is_dir():
        raise CliError(f"PRED_DIR {args.pred_dir} is not a folder; pass the folder holding <video>/<exp_id>/")
    if not args.data_root.is_dir():
        raise CliError(f"--data-root {args.data_root} is not a folder; pass the dataset folder")
    common = dict(split=args.split, workers=args.workers, progress=not args.quiet)
    try:
        if args.dataset == "revos":
            result = evaluate_revos(args.pred_dir, args.data_root, mode=args.mode, **common)
        elif args.dataset == "mevis":
            result = evaluate_mevis(args.pred_dir, args.data_root, **common)
        else:
            result = evaluate_davis17(args.pred_dir, args.data_root, **common)
    except (DatasetFormatError, FileNotFoundError) as err:
        raise CliError(str(err)) from None
    print(result.table())
    try:
        if args.out is not None:
            print(f"summary written to {result.to_json(args.out)}")
        if args.csv is not None:
            print(f"per-expression scores written to {result.to_csv(args.csv)}")
    except OSError as err:
        raise CliError(f"cannot write output: {err}") from None
    return 0


def _add_plugin_parser(subparsers: argparse._SubParsersAction, name: str, load: bool) -> None:
    module_name, text = PLUGIN_COMMANDS[name]
    parser = subparsers.add_parser(name, help=text, description=text)
    parser.set_defaults(handler=_run_plugin, plugin=name)
    if not load:
        return
    if importlib.util.find_spec(module_name) is None:
        parser.set_defaults(plugin_missing=module_name)
        parser.description = f"{text} [not available: module {module_name} is not installed]"
        return
    module = importlib.import_module(module_name)
    if hasattr(module, "add_arguments"):
        module.add_arguments(parser)


def _run_plugin(args: argparse.Namespace) -> int:
    missing = getattr(args, "plugin_missing", None)
    if missing:
        raise CliError(f"'visa {args.plugin}' is not available: module {missing} is not installed")
    module = importlib.import_module(PLUGIN_COMMANDS[args.plugin][0])
    result = module.main(args)
    return int(result or 0)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; plugin modules are imported only for ``command`` (the one being run)."""
    parser = argparse.ArgumentParser(
        prog="visa", description="VISA reasoning video object segmentation: evaluation, inference, demo"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="{eval," + ",".join(PLUGIN_COMMANDS) + "}")
    subparsers.required = True
    _add_eval_parser(subparsers)
    for name in PLUGIN_COMMANDS:
        _add_plugin_parser(subparsers, name, load=(name == command))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``visa`` console script.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, 2 on bad input (message on stderr).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and not argv[0].startswith("-") else None
    parser = build_parser(command)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse already printed its usage message
        return int(exit_.code or 0)
    from visa_lib.data.revos import DatasetFormatError

    try:
        return args.handler(args)
    except (CliError, DatasetFormatError, FileNotFoundError) as err:
        # Bad input (also from plugin commands): one line saying what and where, no traceback.
        print(f"visa {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
