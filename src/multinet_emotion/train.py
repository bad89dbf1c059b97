"""Training: the loop, the learning-rate schedule, checkpoints, exact resume, history and curves.

One epoch = one pass over the training split in a seeded order. The learning rate follows a
linear warm-up then a cosine decay to zero (one cycle: every run ends annealed, with a
shippable model), computed from the step number, so a resumed run is the same run.

What is trained towards (``labels``: FER2013, FER+ votes or a mix) is targets.py's; the
augmentation is augment.py's; starting from earlier weights (``--init``) is init_weights.py's;
distilling an exported teacher's probabilities into the targets (``--teacher``) is distill.py's.
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
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .augment import augment
from .checkpoint import RESUME_KEYS, read_checkpoint, save_checkpoint, training_meta
from .config import LABEL_SETS, TrainConfig  # noqa: F401 - re-exported
from .datasets import DataConfig, Dataset, Split, ferplus_majority_labels, load_dataset
from .distill import augment_flips, mixed_targets, teacher_outputs
from .emotions import EMOTIONS
from .errors import MultiNetError
from .files import atomic_path, atomic_write_text, file_sha256
from .init_weights import init_from
from .metrics import confusion_matrix, summarize
from .model import ModelConfig, build_model, unwrap
from .progress import bar
from .targets import (  # noqa: F401 - Targets re-exported
    Targets,
    class_weights,
    ferplus_dir,
    soft_cross_entropy,
    training_targets,
)

log = logging.getLogger(__name__)


# --- helpers ------------------------------------------------------------------------------

def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise MultiNetError(f"unknown --precision {precision!r}: use auto, fp32 or bf16")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if torch.backends.mkldnn.is_available() and \
        torch.ops.mkldnn._is_mkldnn_bf16_supported() else None


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


# --- distributed --------------------------------------------------------------------------

def _dist_setup() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        torch.backends.cudnn.benchmark = True  # one input size: let cuDNN pick its kernels
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


# --- the loop -----------------------------------------------------------------------------

def train(config: TrainConfig, dataset: Dataset | None = None) -> dict:
    """Train a model; returns the history dict (also written to ``out/history.json``)."""
    return fit(config, dataset)[1]


def fit(config: TrainConfig, dataset: Dataset | None = None) -> tuple[nn.Module, dict]:
    """Train and return (the final model, unwrapped from DDP; the history)."""
    began = time.time()
    rank, world, device = _dist_setup()
    main = rank == 0
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    last_path = out / "last.pt"
    if not config.resume and last_path.exists():
        raise MultiNetError(f"{out}: a run already exists here; pass --resume to continue it "
                            "or choose another --out")
    if config.resume and not last_path.exists():
        raise MultiNetError(f"{last_path}: nothing to resume; start without --resume")
    resumed = None
    if config.resume:
        ckpt = read_checkpoint(last_path)
        if set(ckpt.resume) != set(RESUME_KEYS):
            raise MultiNetError(f"{last_path}: cannot resume from this file: it has no "
                                f"{', '.join(RESUME_KEYS)} (a best.pt copied over last.pt?)")
        try:
            config = resumed_config(config, ckpt.resume["history"]["config"])
        except MultiNetError:
            raise
        except Exception as e:  # noqa: BLE001 - a damaged file is the user's to know about
            raise MultiNetError(f"{last_path}: cannot resume from this file ({e})") from None
        resumed = {"model": ckpt.state, **ckpt.resume}
        del ckpt
        replan_epochs(config, resumed, last_path)
    if dataset is None:
        if config.data is None:
            raise MultiNetError("no data: pass --data PATH")
        dataset = load_dataset(config.data)
    train_split, val_split = dataset.split("train"), dataset.split("val")
    targets = training_targets(train_split, config, dataset)
    if main and targets.left_out:
        log.info("--labels %s: %d training images left out (FER+ annotators: not a face, "
                 "unknown, or no vote on our classes)", config.labels, targets.left_out)
    # --teacher: per image, the target of the image itself [:, 0] and of its mirror image [:, 1]
    distilled, teacher = None, None
    if config.teacher is not None:
        distilled, teacher = _distilled_targets(config, train_split, targets, main, resumed)
    train_split = targets.split
    val_ferplus = None
    if config.labels != "fer2013" or (config.data is not None and ferplus_dir(config).is_dir()):
        try:
            val_ferplus = ferplus_majority_labels(val_split, ferplus_dir(config))
        except MultiNetError:
            if config.labels != "fer2013":
                raise
    config.model.image_size = train_split.images.shape[-1]
    dtype = autocast_dtype(config.precision, device)

    torch.manual_seed(config.seed)
    model = build_model(config.model).to(device)
    if config.init is not None and not config.resume:
        init_from(model, Path(config.init), train_split.images[:2048])
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    decay, no_decay = [], []
    for _name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "adamw":
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=config.lr)
    elif config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    else:
        raise MultiNetError(f"unknown --optimizer {config.optimizer!r}: use adamw or sgd")
    counts = (targets.probs if distilled is None else distilled[:, 0]).sum(0)
    weights = class_weights(counts, config.class_weights)
    weights = weights.to(device) if weights is not None else None

    history: dict = {"config": _jsonable(asdict(config)), "epochs": [], "best_epoch": None,
                     "best_val_accuracy": -1.0, "data": dataset.report() | {"skipped": None},
                     "world_size": world, "precision": str(dtype or torch.float32),
                     "device": _device_name(device),
                     "wall_time_s": 0.0}
    if teacher is not None:
        history["teacher"] = teacher
    start_epoch, stale = 0, 0
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        history, start_epoch, stale = resumed["history"], resumed["epoch"] + 1, resumed["stale"]
        del resumed
        if main:
            log.info("resuming %s after epoch %d with the run's saved settings", out, start_epoch)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)

    if main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.json", json.dumps(_jsonable(asdict(config)), indent=2))
        atomic_write_text(out / "data_report.json", json.dumps(dataset.report(), indent=2))

    per_rank = config.batch_size
    steps_per_epoch = len(train_split) // (per_rank * world)
    if config.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise MultiNetError(f"only {len(train_split)} training images: fewer than one batch "
                            f"of {per_rank * world}; lower --batch-size")
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = max(1, int(config.warmup * steps_per_epoch))

    save_s = 0.0  # the last epoch's checkpoint and plot, counted in the time budget
    for epoch in range(start_epoch, config.epochs):
        if epoch >= config.epochs:  # a time budget shortened the plan
            break
        if stale >= config.patience:
            break
        if config.stop_after_epochs and epoch - start_epoch >= config.stop_after_epochs:
            if main:
                log.info("stopping after %d epochs as asked; continue with --resume",
                         config.stop_after_epochs)
            break
        t0 = time.time()
        g = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        torch.manual_seed(config.seed * 100_003 + epoch + 1)  # dropout
        order = torch.randperm(len(train_split), generator=g).numpy()
        model.train()
        # running sums stay on the device: no wait for the GPU at every step
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        seen = 0
        pbar = bar(steps_per_epoch * per_rank, f"epoch {epoch + 1}/{config.epochs}", "img") \
            if main else None
        for step in range(steps_per_epoch):
            global_step = epoch * steps_per_epoch + step
            lr = lr_at(global_step, total_steps, warmup_steps, config.lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = order[(step * world + rank) * per_rank:(step * world + rank + 1) * per_rank]
            x = to_input(train_split.images[batch], device, config.channels_last)
            if distilled is None:
                y = torch.from_numpy(targets.probs[batch]).to(device)
            else:  # a view that augment mirrors takes the mirrored face's teacher output
                mirrored = augment_flips(g, len(batch)).astype(np.int64) if config.augment else 0
                y = torch.from_numpy(distilled[batch, mirrored]).to(device)
            if config.augment and device.type == "cpu":
                threads = torch.get_num_threads()
                torch.set_num_threads(1)  # small tensors: 10x faster than two contending threads
                x = augment(x, g, config.webcam)
                torch.set_num_threads(threads)
            elif config.augment:
                x = augment(x, g, config.webcam)  # on the GPU
            if config.augment and config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            lam, perm = 1.0, None
            if config.mixup > 0:
                lam = float(torch.distributions.Beta(config.mixup, config.mixup).sample())
                perm = torch.randperm(len(x), generator=g).to(device)
                x = lam * x + (1 - lam) * x[perm]
                y = lam * y + (1 - lam) * y[perm]
            with torch.autocast(device.type, dtype=dtype or torch.bfloat16,
                                enabled=dtype is not None):
                logits = model(x)
            logits = logits.float()
            loss = soft_cross_entropy(logits, y, weights, config.label_smoothing)
            if (device.type == "cpu" or step % 25 == 0) and not torch.isfinite(loss):
                raise MultiNetError(f"training diverged at epoch {epoch + 1} step {step} "
                                    f"(loss {loss.item()}); lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
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
        if world > 1:  # batch-norm running statistics: every process keeps rank 0's
            for buf in unwrap(model).buffers():
                dist.broadcast(buf, 0)
        train_time = time.time() - t0
        if main:
            val = score(unwrap(model), val_split, config, device, dtype, val_ferplus)
            epoch_time = time.time() - t0
            record = {"epoch": epoch + 1, "train_loss": float(loss_sum) / seen,
                      "train_accuracy": int(correct) / seen, "val_loss": val["loss"],
                      "val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"],
                      "val_recall": {k: v["recall"] for k, v in val["per_class"].items()},
                      "val_accuracy_fer2013": val["fer2013"]["accuracy"],
                      "val_accuracy_ferplus": val.get("ferplus", {}).get("accuracy"),
                      "lr": lr, "images": seen * world, "images_per_s": seen * world / train_time,
                      "epoch_time_s": epoch_time}
            history["epochs"].append(record)
            history["wall_time_s"] += epoch_time
            if config.minutes:  # re-planned before saving, so the saved run knows its plan
                recent = sorted(e["epoch_time_s"] for e in history["epochs"][-5:])
                typical = recent[(len(recent) - 1) // 2] + save_s
                fit_in_budget(config, history, epoch, began, typical)
                total_steps = steps_per_epoch * config.epochs
            saving = time.time()
            if val["accuracy"] > history["best_val_accuracy"]:
                history["best_val_accuracy"] = val["accuracy"]
                history["best_epoch"] = epoch + 1
                stale = 0
                _save_best(out / "best.pt", model, config, dataset, record)
            else:
                stale += 1
            if config.keep_last or epoch + 1 >= config.epochs:
                save_checkpoint(last_path, model, _meta(config, dataset, record),
                                resume={"optimizer": optimizer.state_dict(), "epoch": epoch,
                                        "stale": stale, "history": history})
            atomic_write_text(out / "history.json", json.dumps(history, indent=2))
            plot_history(history, out / "curves.png")
            save_s = time.time() - saving
            log.info("epoch %d: train loss %.3f acc %.3f | val loss %.3f acc %.3f macro-F1 %.3f"
                     " | %.0f img/s%s", epoch + 1, record["train_loss"], record["train_accuracy"],
                     val["loss"], val["accuracy"], val["macro_f1"], record["images_per_s"],
                     " (best)" if stale == 0 else "")
        if world > 1:
            flag = torch.tensor([stale, config.epochs], dtype=torch.int64)
            dist.broadcast(flag, 0)
            stale, config.epochs = int(flag[0]), int(flag[1])
            total_steps = steps_per_epoch * config.epochs
    if main and stale >= config.patience:
        log.info("stopped early: validation accuracy did not improve for %d epochs", stale)
    if dist.is_initialized():
        dist.barrier()
    return unwrap(model), history


def _distilled_targets(config: TrainConfig, split: Split, targets: Targets, main: bool,
                       resumed: dict | None) -> tuple[np.ndarray, dict]:
    """``--teacher``: the targets mixed with the teacher's softened probabilities, ``[N, 2, 6]``
    (each image, its mirror image), and what history.json records of the teacher. The first
    process computes (or reads) the cached teacher outputs while the others wait, then read
    them from the cache."""
    was = (resumed or {}).get("history", {}).get("teacher")
    if was is not None and Path(config.teacher).is_file() and \
            was["teacher_sha256"] != (now := file_sha256(Path(config.teacher))):
        raise MultiNetError(f"--teacher {config.teacher}: not the teacher this run was trained "
                            f"with (sha256 {was['teacher_sha256'][:12]}..., now {now[:12]}...); "
                            "start a new run with another --out")
    if not main and dist.is_initialized():
        dist.barrier()
    outputs, info = teacher_outputs(Path(config.teacher), split.images, config.threads or 0)
    if main and dist.is_initialized():
        dist.barrier()
    if targets.index is not None:
        outputs = outputs[targets.index]
    if main:
        if info["class_bias"]:
            log.info("--teacher: the class offsets built into %s (%s) are undone: the student "
                     "learns the network's probabilities", config.teacher,
                     ", ".join(f"{b:+.2f}" for b in info["class_bias"]))
        agree = float((outputs[:, 0].argmax(1) == targets.probs.argmax(1)).mean()) \
            if len(outputs) else 0.0
        log.info("--teacher %s: targets = %g x teacher (T = %g) + %g x %s targets; the teacher's "
                 "top class agrees with theirs on %.1f%% of the training images",
                 config.teacher, config.teacher_mix, config.teacher_temperature,
                 1 - config.teacher_mix, config.labels, 100 * agree)
    info = {**info, "mix": config.teacher_mix, "temperature": config.teacher_temperature}
    return mixed_targets(targets.probs, outputs, config.teacher_mix, config.teacher_temperature,
                         info["class_bias"]), info


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"CPU, {os.cpu_count()} cores"


def _meta(config: TrainConfig, dataset: Dataset, record: dict) -> dict:
    return training_meta(epoch=record["epoch"], val_accuracy=record["val_accuracy"],
                         labels=config.labels, val_macro_f1=record["val_macro_f1"],
                         disgust=str(dataset.disgust), data=str(dataset.root),
                         train_config=_jsonable(asdict(config)))


def _save_best(path: Path, model: nn.Module, config: TrainConfig, dataset: Dataset,
               record: dict) -> None:
    save_checkpoint(path, model, _meta(config, dataset, record))


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
    from .emotions import DisgustPolicy

    def merge(now_obj, saved_part: dict, default_obj, cls, where: str = ""):
        now, default = _jsonable(asdict(now_obj)), _jsonable(asdict(default_obj))
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


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "value"):
        return obj.value
    return obj
