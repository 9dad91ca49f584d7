"""``visa train CONFIG [--option value ...]``: train VISA (toy on a CPU, full rung on one or many GPUs).

CONFIG is a preset (``toy``, ``visa-7b``, ``visa-13b``, ``visa-7b-qlora``, ``visa-13b-qlora``) or a
YAML/JSON file of ``TrainConfig`` fields; every ``--option value`` after it overrides one field
(``--steps 20 --frames 4 11 --output-dir runs/toy --no-export``); ``--data mixture.yaml
--num-workers 4`` trains on VISA's weighted mixture of datasets described in that file
(``docs/datasets.md``), loaded in 4 DataLoader worker processes. ``--print-config`` prints the
resolved configuration and exits. Several GPUs: ``accelerate launch --config_file
configs/accelerate/zero2.yaml -m visa_lib.cli train visa-7b ...`` (``docs/training.md``).
"""

from __future__ import annotations

import argparse
import json

from visa_lib.cli import CliError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="preset name or .yaml/.json file (see docs/training.md)")
    parser.add_argument(
        "options",
        nargs=argparse.REMAINDER,
        help="--option value overrides of TrainConfig fields, e.g. --steps 20 --output-dir runs/x; "
        "--print-config prints the resolved configuration and exits",
    )


def main(args: argparse.Namespace) -> int:
    from visa_lib.train.config import load_train_config, parse_overrides

    tokens = list(args.options)
    show_only = "--print-config" in tokens
    tokens = [t for t in tokens if t != "--print-config"]
    try:
        config = load_train_config(args.config, **parse_overrides(tokens))
    except ValueError as err:
        raise CliError(str(err)) from None
    if show_only:
        print(json.dumps(config.to_dict(), indent=1))
        return 0

    from visa_lib.train.sources import mixture_sources
    from visa_lib.train.trainer import check_environment, train

    try:
        check_environment(config)
        # a mixture file is read before the model is built, so a bad one fails at once
        data = mixture_sources(config) if config.uses_mixture() else None
    except (RuntimeError, ValueError) as err:
        raise CliError(str(err)) from None
    result = train(config, data=data)
    last = [h for h in result.history if h["phase"] == "visa"][-20:]
    if last:
        means = {k: sum(h[k] for h in last) / len(last) for k in ("total", "ce", "bce", "dice")}
        print("final loss (mean of the last steps): " + " ".join(f"{k}={v:.4f}" for k, v in means.items()))
    if result.validations:
        print(f"last validation: {result.validations[-1]}")
    if result.export_dir is not None:
        print(f"merged model (VISA layout): {result.export_dir}")
    return 0
