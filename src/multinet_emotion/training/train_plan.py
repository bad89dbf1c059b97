"""The plan of a training run: the settings a resumed run keeps (:func:`resumed_config`), and
its number of epochs re-planned so the learning rate still anneals to 0 by the end
(``--resume --epochs N``: :func:`replan_epochs`; ``--minutes M``: :func:`fit_in_budget`).
Each change of plan is logged and kept in the run's history."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

from ..errors import MultiNetError
from .config import ModelConfig, TrainConfig
from .datasets import DataConfig

log = logging.getLogger(__name__)


#: options that may change between the start of a run and its resumption
PER_INVOCATION = {"out", "resume", "threads", "eval_batch_size", "stop_after_epochs", "init",
                  "path", "strict", "cache", "ferplus"}
#: may differ on --resume; checked by replan_epochs
REPLANNABLE = {"epochs"}


def fit_in_budget(config: TrainConfig, history: dict, epoch: int, began: float,
                  epoch_time: float) -> None:
    """``--minutes M``: after epoch ``epoch`` (0-based), with epochs taking ``epoch_time``
    seconds (the caller passes the lower median of the last five), re-plan to the epochs that still
    fit in the budget counted from ``began`` (never more than asked), so the cosine still
    reaches 0 by the end. The first epoch is slow on a GPU (kernel tuning), so a later epoch
    may lengthen the plan again. Logged and kept in the history."""
    asked = history.setdefault("epochs_asked", config.epochs)
    left = config.minutes * 60 - (time.time() - began)
    done = epoch + 1
    fit = min(asked, done + max(0, int(left // max(epoch_time, 1e-6))))
    if fit == config.epochs:
        return
    log.warning("time budget of %g min: %d epochs instead of %d (an epoch takes %.1f s; the "
                "learning rate now anneals to 0 at epoch %d)", config.minutes, fit,
                config.epochs, epoch_time, fit)
    history.setdefault("replanned", []).append(
        {"after_epoch": done, "from_epochs": config.epochs, "to_epochs": fit,
         "reason": f"--minutes {config.minutes:g}"})
    config.epochs = fit
    history["config"]["epochs"] = fit


def replan_epochs(config: TrainConfig, resumed: dict, last_path: Path) -> None:
    """``--resume --epochs N`` re-plans the rest of the schedule: the cosine then ends at epoch
    N, so a run that must finish sooner (or may go on longer) still ends annealed. The change is
    logged and kept in the history; N must leave at least one epoch to train."""
    history = resumed["history"]
    planned = history["config"]["epochs"]
    if config.epochs == planned:
        return
    done = resumed["epoch"] + 1
    if config.epochs <= done:
        raise MultiNetError(f"--epochs {config.epochs}: {last_path} has already trained {done} "
                            f"epochs; give more than {done} to re-plan the schedule")
    log.warning("re-planning the schedule after epoch %d: %d epochs instead of %d (the learning "
                "rate now anneals to 0 at epoch %d)", done, config.epochs, planned, config.epochs)
    history.setdefault("replanned", []).append(
        {"after_epoch": done, "from_epochs": planned, "to_epochs": config.epochs})
    history["config"]["epochs"] = config.epochs


def resumed_config(config: TrainConfig, saved: dict) -> TrainConfig:
    """The saved settings of the run being resumed, with this invocation's own options.

    An option given now that differs from the run's value (and from its default) is refused,
    so a resumed run is the same run and nobody is surprised by an ignored option."""
    from ..emotions import DisgustPolicy

    def merge(now_obj, saved_part: dict, default_obj, cls, where: str = ""):
        now, default = jsonable(asdict(now_obj)), jsonable(asdict(default_obj))
        values = {}
        for key, value in now.items():
            if key in ("model", "data"):
                continue
            if key in PER_INVOCATION or key not in saved_part or (
                    key in REPLANNABLE and value != default.get(key)):
                values[key] = getattr(now_obj, key)
                continue
            if value != saved_part[key] and value != default.get(key):
                flag = "--" + key.replace("_", "-")
                raise MultiNetError(f"{flag} {value} differs from the run's {saved_part[key]}: "
                                    f"a resumed run keeps its settings ({where or 'config.json'});"
                                    " drop the option, or start a new run with another --out")
            values[key] = saved_part[key]
        return cls(**values)

    # runs from before these options existed were trained this way
    saved = {"labels": "fer2013", "optimizer": "sgd", "webcam": False, **saved}
    saved["model"] = {"stem": "imagenet", "normalization": "imagenet", **saved.get("model", {})}
    model = merge(config.model, saved.get("model", {}), ModelConfig(), ModelConfig)
    data = None
    if config.data is not None:
        data = merge(config.data, saved.get("data") or {}, DataConfig(path=config.data.path),
                     DataConfig)
        data.disgust = DisgustPolicy(data.disgust)
        data.path = Path(data.path)
    merged = merge(config, saved, TrainConfig(), TrainConfig)
    merged.model, merged.data = model, data
    if merged.init is not None:
        merged.init = Path(merged.init)
    if merged.ferplus is not None:
        merged.ferplus = Path(merged.ferplus)
    if merged.teacher is not None:
        merged.teacher = Path(merged.teacher)
    merged.out = Path(merged.out)
    return merged


def jsonable(obj):
    """``obj`` with paths and enums as the strings and values JSON holds."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "value"):
        return obj.value
    return obj
