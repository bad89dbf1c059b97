"""The command line: a thin layer over the package's modules.

Each sub-command parses options into the stage's config dataclass and calls the library.
User mistakes (MultiNetError) print one line on stderr and exit with status 2. ``train`` and
the parser's wiring are here; the other sub-commands each have a module beside this one:
``cli_models`` (evaluate, export), ``cli_detect``, ``cli_serve`` and ``cli_platform``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import cli_detect, cli_models, cli_platform, cli_serve
from .cli_common import add_data_args, data_config, need_torch
from .errors import MultiNetError

log = logging.getLogger("multinet_emotion")


# --- train --------------------------------------------------------------------------------

def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model on labelled faces",
                       description="Train the hybrid (or one backbone) with checkpoints after "
                       "every epoch; --resume continues an interrupted run exactly.")
    add_data_args(p)
    from . import options
    from .training.config import ModelConfig, TrainConfig
    options.add_options(p, TrainConfig)  # each option from its one statement in config.py
    options.add_options(p, ModelConfig)
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    need_torch("train")
    from . import options
    from .training.model import ModelConfig
    from .training.train import TrainConfig, train
    config = TrainConfig(**options.values(TrainConfig, args),
                         model=ModelConfig(**options.values(ModelConfig, args)),
                         data=data_config(args, args.image_size, args.seed))
    history = train(config)
    if history.get("best_epoch"):
        print(f"best epoch {history['best_epoch']}: validation accuracy "
              f"{history['best_val_accuracy']:.4f}; model {args.out / 'best.pt'}")
    return 0


# --- main ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multinet-emotion",
        description="Facial emotion recognition for e-learning (angry, fear, happy, neutral, "
                    "sad, surprise).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    cli_detect.detect_parser(sub)
    cli_models.evaluate_parser(sub)
    cli_models.export_parser(sub)
    cli_serve.serve_parser(sub)
    cli_platform.platform_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    if not args.verbose:  # libraries' chatter (alembic lists its plugins at INFO)
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except MultiNetError as e:
        print(f"multinet-emotion {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"multinet-emotion {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
