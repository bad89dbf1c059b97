"""Training: the loop, the learning-rate schedule, checkpoints, exact resume, history and curves.

One epoch = one pass over the training split in a seeded order. The learning rate follows a
linear warm-up then a cosine decay to zero (one cycle: every run ends annealed, with a
shippable model), computed from the step number, so a resumed run is the same run.

What is trained towards (``labels``: FER2013, FER+ votes or a mix) is targets.py's; the
augmentation is augment.py's; starting from earlier weights (``--init``) is init_weights.py's;
distilling an exported teacher's probabilities into the targets (``--teacher``) is distill.py's;
setting a run up (data, model, optimizer, what a resumed run continues) is train_setup.py's,
and the settings of a resumed run and its re-planned epochs are train_plan.py's.
Validation always scores both label sets; the best epoch is chosen on the one trained
for (FER+ majority labels for ``ferplus`` and ``mix``). After each epoch the model is scored
on the validation split, the best epoch is kept (``best.pt``), everything needed to continue
is written atomically (``last.pt``; the file format is checkpoint.py's), and training stops
early once validation accuracy has not improved for ``patience`` epochs.

Runs unchanged under ``torchrun --nproc_per_node N``: DistributedDataParallel with gloo on
CPU or NCCL on GPUs, each process taking its share of every batch order.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..emotions import EMOTIONS
from ..errors import MultiNetError
from ..files import atomic_path, atomic_write_text
from ..progress import bar
from .augment import augment
from .checkpoint import save_checkpoint, training_meta
from .config import LABEL_SETS, TrainConfig  # noqa: F401 - re-exported
from .datasets import DataConfig, Dataset, Split  # noqa: F401 - DataConfig re-exported
from .distill import augment_flips
from .metrics import confusion_matrix, summarize
from .model import ModelConfig, unwrap  # noqa: F401 - ModelConfig re-exported
from .targets import (  # noqa: F401 - re-exported
    Targets,
    class_weights,
    ferplus_dir,
    soft_cross_entropy,
    training_targets,
)
from .train_plan import (  # noqa: F401 - the plan's names re-exported
    PER_INVOCATION,
    REPLANNABLE,
    fit_in_budget,
    jsonable,
    replan_epochs,
    resumed_config,
)
from .train_setup import Run, autocast_dtype, set_up  # noqa: F401 - autocast_dtype re-exported

log = logging.getLogger(__name__)


# --- helpers ------------------------------------------------------------------------------

def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def to_input(images: np.ndarray, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = torch.from_numpy(images).to(device=device, dtype=torch.float32).unsqueeze(1)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, batch_size: int = 256,
                   device: torch.device | None = None, dtype: torch.dtype | None = None,
                   channels_last: bool = False, desc: str | None = None) -> np.ndarray:
    """Logits for uint8 images [N,S,S] (eval mode, no augmentation)."""
    device = device or next(model.parameters()).device
    model.eval()
    out = []
    steps = range(0, len(images), batch_size)
    pbar = bar(len(images), desc or "predicting", unit="img", leave=False)
    for i in steps:
        x = to_input(images[i:i + batch_size], device, channels_last)
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            out.append(model(x).float().cpu())
        pbar.update(len(x))
    pbar.close()
    return torch.cat(out).numpy() if out else np.zeros((0, len(EMOTIONS)), np.float32)


def score(model: nn.Module, split: Split, config: TrainConfig, device: torch.device,
          dtype: torch.dtype | None, ferplus: tuple[np.ndarray, np.ndarray] | None = None
          ) -> dict:
    """Validation figures on the original labels and, given ``ferplus`` (indices, labels),
    on the FER+ majority labels; the top-level figures are those of the set trained for."""
    logits = predict_logits(model, split.images, config.eval_batch_size, device, dtype,
                            config.channels_last, desc="validating")
    result = summarize(confusion_matrix(split.labels, logits.argmax(1)))
    result["loss"] = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(split.labels)).item()
    result["fer2013"] = {"accuracy": result["accuracy"], "macro_f1": result["macro_f1"]}
    if ferplus is not None and len(ferplus[0]):
        idx, labels = ferplus
        fp = summarize(confusion_matrix(labels, logits[idx].argmax(1)))
        fp["loss"] = F.cross_entropy(torch.from_numpy(logits[idx]), torch.from_numpy(labels)).item()
        fp["fer2013"] = result["fer2013"]
        fp["ferplus"] = {"accuracy": fp["accuracy"], "macro_f1": fp["macro_f1"]}
        if config.labels != "fer2013":
            return fp
        result["ferplus"] = fp["ferplus"]
    return result


# --- the loop -----------------------------------------------------------------------------

def train(config: TrainConfig, dataset: Dataset | None = None) -> dict:
    """Train a model; returns the history dict (also written to ``out/history.json``)."""
    return fit(config, dataset)[1]


class _Trained(NamedTuple):
    """One epoch's training pass: running sums (on the device), its last learning rate, when
    it began and how long it took."""

    loss_sum: torch.Tensor
    correct: torch.Tensor
    seen: int
    lr: float
    t0: float
    train_time: float


def fit(config: TrainConfig, dataset: Dataset | None = None) -> tuple[nn.Module, dict]:
    """Train and return (the final model, unwrapped from DDP; the history)."""
    began = time.time()
    run = set_up(config, dataset, began)
    config = run.config
    for epoch in range(run.start_epoch, config.epochs):
        if _stops_before(run, epoch):
            break
        trained = _train_epoch(run, epoch)
        if run.main:
            record, val = _validate(run, epoch, trained)
            if config.minutes:  # re-planned before saving, so the saved run knows its plan
                recent = sorted(e["epoch_time_s"] for e in run.history["epochs"][-5:])
                typical = recent[(len(recent) - 1) // 2] + run.save_s
                fit_in_budget(config, run.history, epoch, run.began, typical)
            _save_epoch(run, epoch, record, val)
        if run.world > 1:
            flag = torch.tensor([run.stale, config.epochs], dtype=torch.int64)
            dist.broadcast(flag, 0)
            run.stale, config.epochs = int(flag[0]), int(flag[1])
    if run.main and run.stale >= config.patience:
        log.info("stopped early: validation accuracy did not improve for %d epochs", run.stale)
    if dist.is_initialized():
        dist.barrier()
    return unwrap(run.model), run.history


def _stops_before(run: Run, epoch: int) -> bool:
    """Whether the run ends before ``epoch``: a shortened plan, patience or
    ``--stop-after-epochs``."""
    config = run.config
    if epoch >= config.epochs:  # a time budget shortened the plan
        return True
    if run.stale >= config.patience:
        return True
    if config.stop_after_epochs and epoch - run.start_epoch >= config.stop_after_epochs:
        if run.main:
            log.info("stopping after %d epochs as asked; continue with --resume",
                     config.stop_after_epochs)
        return True
    return False


def _train_epoch(run: Run, epoch: int) -> _Trained:
    """One pass over this process's share of the training split, in the epoch's seeded order."""
    config, per_rank = run.config, run.config.batch_size
    t0 = time.time()
    g = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    torch.manual_seed(config.seed * 100_003 + epoch + 1)  # dropout
    order = torch.randperm(len(run.data.train), generator=g).numpy()
    run.model.train()
    # running sums stay on the device: no wait for the GPU at every step
    loss_sum = torch.zeros((), device=run.device)
    correct = torch.zeros((), device=run.device, dtype=torch.int64)
    seen = 0
    pbar = bar(run.steps_per_epoch * per_rank, f"epoch {epoch + 1}/{config.epochs}", "img") \
        if run.main else None
    for step in range(run.steps_per_epoch):
        global_step = epoch * run.steps_per_epoch + step
        lr = lr_at(global_step, run.total_steps, run.warmup_steps, config.lr)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        first = step * run.world + run.rank
        loss, logits, y = _train_step(run, order[first * per_rank:(first + 1) * per_rank], g,
                                      epoch, step)
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y.argmax(1)).sum()
        seen += len(y)
        if pbar is not None:
            pbar.update(len(y))
        if pbar is not None and not pbar.disable:
            pbar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}",
                             acc=f"{int(correct) / seen:.3f}", lr=f"{lr:.4f}", refresh=False)
    if pbar is not None:
        pbar.close()
    if run.world > 1:  # batch-norm running statistics: every process keeps rank 0's
        for buf in unwrap(run.model).buffers():
            dist.broadcast(buf, 0)
    return _Trained(loss_sum, correct, seen, lr, t0, time.time() - t0)


def _train_step(run: Run, batch: np.ndarray, g: torch.Generator, epoch: int, step: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimizer step on the images ``batch`` (augmented, mixed up): (loss, logits,
    targets)."""
    config, device, data = run.config, run.device, run.data
    x = to_input(data.train.images[batch], device, config.channels_last)
    if data.distilled is None:
        y = torch.from_numpy(data.targets.probs[batch]).to(device)
    else:  # a view that augment mirrors takes the mirrored face's teacher output
        mirrored = augment_flips(g, len(batch)).astype(np.int64) if config.augment else 0
        y = torch.from_numpy(data.distilled[batch, mirrored]).to(device)
    if config.augment and device.type == "cpu":
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small tensors: 10x faster than two contending threads
        x = augment(x, g, config.webcam)
        torch.set_num_threads(threads)
    elif config.augment:
        x = augment(x, g, config.webcam)  # on the GPU
    if config.augment and config.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if config.mixup > 0:
        lam = float(torch.distributions.Beta(config.mixup, config.mixup).sample())
        perm = torch.randperm(len(x), generator=g).to(device)
        x = lam * x + (1 - lam) * x[perm]
        y = lam * y + (1 - lam) * y[perm]
    with torch.autocast(device.type, dtype=run.dtype or torch.bfloat16,
                        enabled=run.dtype is not None):
        logits = run.model(x)
    logits = logits.float()
    loss = soft_cross_entropy(logits, y, run.weights, config.label_smoothing)
    if (device.type == "cpu" or step % 25 == 0) and not torch.isfinite(loss):
        raise MultiNetError(f"training diverged at epoch {epoch + 1} step {step} "
                            f"(loss {loss.item()}); lower --lr")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    return loss, logits, y


def _validate(run: Run, epoch: int, trained: _Trained) -> tuple[dict, dict]:
    """The epoch scored on the validation split: its history record (appended) and the
    figures."""
    val = score(unwrap(run.model), run.data.val, run.config, run.device, run.dtype,
                run.data.val_ferplus)
    epoch_time = time.time() - trained.t0
    seen, world = trained.seen, run.world
    record = {"epoch": epoch + 1, "train_loss": float(trained.loss_sum) / seen,
              "train_accuracy": int(trained.correct) / seen, "val_loss": val["loss"],
              "val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"],
              "val_recall": {k: v["recall"] for k, v in val["per_class"].items()},
              "val_accuracy_fer2013": val["fer2013"]["accuracy"],
              "val_accuracy_ferplus": val.get("ferplus", {}).get("accuracy"),
              "lr": trained.lr, "images": seen * world,
              "images_per_s": seen * world / trained.train_time,
              "epoch_time_s": epoch_time}
    run.history["epochs"].append(record)
    run.history["wall_time_s"] += epoch_time
    return record, val


def _save_epoch(run: Run, epoch: int, record: dict, val: dict) -> None:
    """Keep the best epoch (best.pt) and everything needed to continue (last.pt), write
    history.json and the curves, and log the epoch."""
    config, history, out = run.config, run.history, run.out
    saving = time.time()
    if val["accuracy"] > history["best_val_accuracy"]:
        history["best_val_accuracy"] = val["accuracy"]
        history["best_epoch"] = epoch + 1
        run.stale = 0
        _save_best(out / "best.pt", run.model, config, run.data.dataset, record)
    else:
        run.stale += 1
    if config.keep_last or epoch + 1 >= config.epochs:
        save_checkpoint(out / "last.pt", run.model, _meta(config, run.data.dataset, record),
                        resume={"optimizer": run.optimizer.state_dict(), "epoch": epoch,
                                "stale": run.stale, "history": history})
    atomic_write_text(out / "history.json", json.dumps(history, indent=2))
    plot_history(history, out / "curves.png")
    run.save_s = time.time() - saving
    log.info("epoch %d: train loss %.3f acc %.3f | val loss %.3f acc %.3f macro-F1 %.3f"
             " | %.0f img/s%s", epoch + 1, record["train_loss"], record["train_accuracy"],
             val["loss"], val["accuracy"], val["macro_f1"], record["images_per_s"],
             " (best)" if run.stale == 0 else "")


def _meta(config: TrainConfig, dataset: Dataset, record: dict) -> dict:
    return training_meta(epoch=record["epoch"], val_accuracy=record["val_accuracy"],
                         labels=config.labels, val_macro_f1=record["val_macro_f1"],
                         disgust=str(dataset.disgust), data=str(dataset.root),
                         train_config=jsonable(asdict(config)))


def _save_best(path: Path, model: nn.Module, config: TrainConfig, dataset: Dataset,
               record: dict) -> None:
    save_checkpoint(path, model, _meta(config, dataset, record))


def plot_history(history: dict, path: Path) -> None:
    """Training and validation loss and accuracy per epoch, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: never touches the user's backend

    epochs = [e["epoch"] for e in history["epochs"]]
    if not epochs:
        return
    fig = Figure(figsize=(9, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, [e["train_loss"] for e in history["epochs"]], "o-", label="train")
    ax1.plot(epochs, [e["val_loss"] for e in history["epochs"]], "o-", label="validation")
    ax1.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax2.plot(epochs, [e["train_accuracy"] for e in history["epochs"]], "o-", label="train")
    ax2.plot(epochs, [e["val_accuracy"] for e in history["epochs"]], "o-", label="validation")
    if history.get("best_epoch"):
        ax2.axvline(history["best_epoch"], color="grey", ls="--", lw=1, label="best")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
