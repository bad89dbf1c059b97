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
from pathlib import Path

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
    p.add_argument("--recipe", type=Path, default=None, metavar="FILE.toml",
                   help="take the options a recipe file states (recipes/: the shipped models' "
                        "stages); options given here win")
    p.set_defaults(func=_train)


def recipe_defaults(parser: argparse.ArgumentParser, path: Path) -> dict[str, object]:
    """The options a recipe file (TOML: ``lr = 0.0005``, ``labels = "ferplus"``, ...) states,
    checked against ``parser``'s options; MultiNetError for a missing or bad file or an
    unknown option. ``data`` and ``out`` belong to the command line (machine and run)."""
    import tomllib
    try:
        values = tomllib.loads(path.read_text())
    except OSError as e:
        raise MultiNetError(f"--recipe {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise MultiNetError(f"--recipe {path}: not a TOML file ({e})") from None
    known = {a.dest for a in parser._actions} - {"help", "func", "recipe", "data", "out"}
    values = {k.replace("-", "_"): v for k, v in values.items()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise MultiNetError(f"--recipe {path}: unknown option(s) {', '.join(unknown)} "
                            "(see multinet-emotion train --help)")
    return {k: str(v) if isinstance(v, str) else v for k, v in values.items()}


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
    if getattr(args, "recipe", None) is not None:  # train --recipe: the file's options first
        train = next(a for a in parser._actions
                     if isinstance(a, argparse._SubParsersAction)).choices["train"]
        try:
            train.set_defaults(**recipe_defaults(train, args.recipe))
        except MultiNetError as e:
            print(f"multinet-emotion train: error: {e}", file=sys.stderr)
            return 2
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
