"""What the command line's sub-commands share: the dataset options of train and evaluate,
and the check for PyTorch before a training-half command starts."""

from __future__ import annotations

import argparse

from .emotions import DEFAULT_FACE_SIZE, DisgustPolicy
from .errors import MultiNetError


def add_data_args(p: argparse.ArgumentParser) -> None:
    from . import options
    from .training.datasets import DataConfig
    options.add_options(p, DataConfig)
    p.add_argument("--merge-disgust", action="store_true",
                   help="merge FER2013 'disgust' into 'angry' (default: drop it; evaluate "
                   "follows the model's own policy)")


def data_config(args: argparse.Namespace, image_size: int = DEFAULT_FACE_SIZE,
                 seed: int = 0):
    from . import options
    from .training.datasets import DataConfig
    return DataConfig(**options.values(DataConfig, args), image_size=image_size, seed=seed,
                      disgust=DisgustPolicy.MERGE if args.merge_disgust else DisgustPolicy.DROP)


def need_torch(command: str) -> None:
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError:
        raise MultiNetError(f"'{command}' needs PyTorch: install the training extras with "
                            "scripts/setup.sh full (or pip install 'multinet-emotion[train]')"
                            ) from None
