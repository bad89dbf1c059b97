"""Setting up a training run, before its first epoch: the processes (``torchrun``), the
settings (a resumed run's own, :mod:`.train_plan`), the data and training targets
(``--teacher``'s mixed in), the model and its optimizer, the history, and the run's
config.json and data_report.json. :func:`set_up` returns it all as a :class:`Run`, which the
epochs of train.py carry on."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import MultiNetError
from ..files import atomic_write_text, file_sha256
from .checkpoint import RESUME_KEYS, read_checkpoint
from .config import TrainConfig
from .datasets import Dataset, Split, ferplus_majority_labels, load_dataset
from .distill import mixed_targets, teacher_outputs
from .init_weights import init_from
from .model import build_model
from .targets import Targets, class_weights, ferplus_dir, training_targets
from .train_plan import jsonable, replan_epochs, resumed_config

log = logging.getLogger(__name__)


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


# --- distributed --------------------------------------------------------------------------

def dist_setup() -> tuple[int, int, torch.device]:
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


class RunData(NamedTuple):
    """A run's data: the images trained on with their targets, and the validation split with
    its FER+ majority labels (indices, labels) where there are."""

    dataset: Dataset
    train: Split
    val: Split
    val_ferplus: tuple[np.ndarray, np.ndarray] | None
    targets: Targets
    distilled: np.ndarray | None  # --teacher: per image, its own target [:, 0], its mirror's [:, 1]
    teacher: dict | None  # --teacher: what history.json records of it


@dataclass
class Run:
    """What the steps of ``train.fit`` share: the run as set up, and where it has got to."""

    config: TrainConfig
    rank: int
    world: int
    device: torch.device
    out: Path
    data: RunData
    dtype: torch.dtype | None
    model: nn.Module
    optimizer: torch.optim.Optimizer
    weights: torch.Tensor | None
    history: dict
    began: float
    start_epoch: int
    stale: int
    steps_per_epoch: int
    warmup_steps: int
    save_s: float = 0.0  # the last epoch's checkpoint and plot, counted in the time budget

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def total_steps(self) -> int:
        """The schedule's length: it follows a re-planned number of epochs."""
        return self.steps_per_epoch * self.config.epochs


def set_up(config: TrainConfig, dataset: Dataset | None, began: float) -> Run:
    """Everything the epochs need: the processes, the (resumed) settings, data, model,
    optimizer and history; the run's config.json and data_report.json written."""
    rank, world, device = dist_setup()
    main = rank == 0
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    config, resumed = _resumed(config, out)
    data = _training_data(config, dataset, main, resumed)
    config.model.image_size = data.train.images.shape[-1]
    dtype = autocast_dtype(config.precision, device)
    model, optimizer = _model_and_optimizer(config, device, data.train)
    counts = (data.targets.probs if data.distilled is None else data.distilled[:, 0]).sum(0)
    weights = class_weights(counts, config.class_weights)
    weights = weights.to(device) if weights is not None else None

    history: dict = {"config": jsonable(asdict(config)), "epochs": [], "best_epoch": None,
                     "best_val_accuracy": -1.0,
                     "data": data.dataset.report() | {"skipped": None},
                     "world_size": world, "precision": str(dtype or torch.float32),
                     "device": device_name(device),
                     "wall_time_s": 0.0}
    if data.teacher is not None:
        history["teacher"] = data.teacher
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
        atomic_write_text(out / "config.json", json.dumps(jsonable(asdict(config)), indent=2))
        atomic_write_text(out / "data_report.json", json.dumps(data.dataset.report(), indent=2))
    steps_per_epoch = _steps_per_epoch(config, len(data.train), world)
    return Run(config=config, rank=rank, world=world, device=device, out=out, data=data,
                dtype=dtype, model=model, optimizer=optimizer, weights=weights, history=history,
                began=began, start_epoch=start_epoch, stale=stale,
                steps_per_epoch=steps_per_epoch,
                warmup_steps=max(1, int(config.warmup * steps_per_epoch)))


def _resumed(config: TrainConfig, out: Path) -> tuple[TrainConfig, dict | None]:
    """The run's settings and, with ``--resume``, what its last.pt holds to continue (the
    model's weights, the optimizer, the epoch, the history); a new run never overwrites one."""
    last_path = out / "last.pt"
    if not config.resume and last_path.exists():
        raise MultiNetError(f"{out}: a run already exists here; pass --resume to continue it "
                            "or choose another --out")
    if config.resume and not last_path.exists():
        raise MultiNetError(f"{last_path}: nothing to resume; start without --resume")
    if not config.resume:
        return config, None
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
    return config, resumed


def _training_data(config: TrainConfig, dataset: Dataset | None, main: bool,
                   resumed: dict | None) -> RunData:
    """The dataset (loaded unless given), the training targets (``--teacher``'s mixed in) and
    the validation split's FER+ labels (needed when training for them, else when found)."""
    if dataset is None:
        if config.data is None:
            raise MultiNetError("no data: pass --data PATH")
        dataset = load_dataset(config.data)
    train_split, val_split = dataset.split("train"), dataset.split("val")
    targets = training_targets(train_split, config, dataset)
    if main and targets.left_out:
        log.info("--labels %s: %d training images left out (FER+ annotators: not a face, "
                 "unknown, or no vote on our classes)", config.labels, targets.left_out)
    distilled, teacher = None, None
    if config.teacher is not None:
        distilled, teacher = _distilled_targets(config, train_split, targets, main, resumed)
    val_ferplus = None
    if config.labels != "fer2013" or (config.data is not None and ferplus_dir(config).is_dir()):
        try:
            val_ferplus = ferplus_majority_labels(val_split, ferplus_dir(config))
        except MultiNetError:
            if config.labels != "fer2013":
                raise
    return RunData(dataset, targets.split, val_split, val_ferplus, targets, distilled, teacher)


def _model_and_optimizer(config: TrainConfig, device: torch.device, train_split: Split
                         ) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The seeded model (``--init``'s weights in a new run) and its optimizer, which leaves
    biases and norms undecayed."""
    torch.manual_seed(config.seed)
    model = build_model(config.model).to(device)
    if config.init is not None and not config.resume:
        init_from(model, Path(config.init), train_split.images[:2048])
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
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
    return model, optimizer


def _steps_per_epoch(config: TrainConfig, images: int, world: int) -> int:
    """Batches per epoch for each process: every process takes its share of every batch."""
    per_rank = config.batch_size
    steps = images // (per_rank * world)
    if config.max_steps_per_epoch:
        steps = min(steps, config.max_steps_per_epoch)
    if steps == 0:
        raise MultiNetError(f"only {images} training images: fewer than one batch "
                            f"of {per_rank * world}; lower --batch-size")
    return steps


def _distilled_targets(config: TrainConfig, split: Split, targets: Targets, main: bool,
                       resumed: dict | None) -> tuple[np.ndarray, dict]:
    """``--teacher``: the targets mixed with the teacher's softened probabilities, ``[N, 2, 6]``
    (each image, its mirror image), and what history.json records of the teacher. The first
    process computes (or reads) the cached teacher outputs while the others wait, then read
    them from the cache."""
    assert config.teacher is not None  # called with --teacher only
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


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"CPU, {os.cpu_count()} cores"
