"""The PyTorch checkpoint format: the one module that writes and reads ``best.pt``/``last.pt``.

A checkpoint is one ``torch.save``'d dict, written atomically (a temporary file, then a rename):

``model``
    the network's state dict.
``optimizer``, ``epoch``, ``stale``, ``history``
    ``last.pt`` only: what ``train --resume`` needs to continue the run exactly.
``model_config``
    :class:`~multinet_emotion.training.config.ModelConfig` as a dict; read back with
    ``ModelConfig.from_saved``, which knows the defaults of files from older versions.
``labels``
    the class order, :data:`~multinet_emotion.emotions.EMOTIONS`.
``meta``
    what training recorded about the model (:func:`training_meta`): ``epoch``,
    ``val_accuracy``, ``labels`` (the label set trained on), ``val_macro_f1``, ``disgust``,
    ``data``, ``train_config``. Files may lack keys; :class:`Checkpoint` states the defaults.

Training, evaluation, export, ``--init``, ``--resume`` and the benches all come here. This
module belongs to the training half, but torch (and the network, model.py) is imported only
when a checkpoint is written or read, so evaluate.py can import it on its ONNX-only paths.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..emotions import EMOTIONS, DisgustPolicy
from ..errors import MultiNetError
from ..files import atomic_path
from .config import ModelConfig

if TYPE_CHECKING:
    from torch import nn

    from .model import EmotionNet

#: the entries only ``last.pt`` has, for resuming a run
RESUME_KEYS = ("optimizer", "epoch", "stale", "history")

#: what a checkpoint without these ``meta`` entries was trained with
META_DEFAULTS = {"disgust": DisgustPolicy.DROP.value, "labels": "fer2013"}


def training_meta(*, epoch: int, val_accuracy: float, labels: str, val_macro_f1: float,
                  disgust: str, data: str, train_config: dict) -> dict:
    """The ``meta`` entry a training run writes for the model of one epoch."""
    return {"epoch": epoch, "val_accuracy": val_accuracy, "labels": labels,
            "val_macro_f1": val_macro_f1, "disgust": disgust, "data": data,
            "train_config": train_config}


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint as read from ``path``."""

    path: Path
    model_config: ModelConfig
    meta: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict, repr=False)  # the network's weights
    resume: dict = field(default_factory=dict, repr=False)  # last.pt: RESUME_KEYS

    @property
    def epoch(self) -> int | None:
        return self.meta.get("epoch")

    @property
    def disgust(self) -> DisgustPolicy:
        return DisgustPolicy(self.meta.get("disgust", META_DEFAULTS["disgust"]))

    @property
    def labels_trained(self) -> str:
        """The label set the model was trained on (fer2013, ferplus, mix)."""
        return str(self.meta.get("labels", META_DEFAULTS["labels"]))


def save_checkpoint(path: Path, model: nn.Module, meta: dict, resume: dict | None = None) -> None:
    """Write ``model`` (unwrapped from DDP), its config, the labels and ``meta`` atomically;
    ``resume`` (last.pt) holds the optimizer state, epoch, stale count and history."""
    import torch

    from .model import unwrap

    if resume is not None and set(resume) != set(RESUME_KEYS):
        raise ValueError(f"resume state needs exactly {RESUME_KEYS}, got {sorted(resume)}")
    net = unwrap(model)
    obj = {"model": net.state_dict(),
           **{key: resume[key] for key in RESUME_KEYS if resume is not None},
           "model_config": asdict(net.config), "labels": list(EMOTIONS), "meta": meta}
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def read_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint; a missing file, or one that is not a MultiNetEmotion checkpoint,
    is a :class:`MultiNetError` that names it."""
    path = Path(path)
    if not path.is_file():
        raise MultiNetError(f"{path}: model file not found")
    try:
        import torch
    except ImportError:
        raise MultiNetError(f"{path}: reading a PyTorch checkpoint needs the training extras "
                            "(scripts/setup.sh full), or pass the .onnx export") from None
    try:
        saved: Any = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(saved, dict):
            raise ValueError(f"holds a {type(saved).__name__}, not a dict")
        missing = [k for k in ("model", "model_config") if k not in saved]
        if missing:
            raise ValueError(f"no {' or '.join(repr(k) for k in missing)} entry")
        config = ModelConfig.from_saved(saved["model_config"])
        meta = dict(saved.get("meta") or {})
        DisgustPolicy(meta.get("disgust", META_DEFAULTS["disgust"]))
    except MultiNetError as e:
        raise MultiNetError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise MultiNetError(f"{path}: not a MultiNetEmotion checkpoint ({_reason(e)}); give a "
                            "best.pt or last.pt written by `multinet-emotion train`") from None
    labels = list(saved.get("labels", EMOTIONS))
    if labels != list(EMOTIONS):
        raise MultiNetError(f"{path}: labels {labels} differ from {list(EMOTIONS)}")
    return Checkpoint(path=path, model_config=config, meta=meta, state=saved["model"],
                      resume={k: saved[k] for k in RESUME_KEYS if k in saved})


def load_checkpoint(path: Path) -> tuple[EmotionNet, Checkpoint]:
    """The network of a checkpoint, in eval mode, and what the file says about it (its
    :class:`Checkpoint`, without the weights, which the network now holds)."""
    from .model import EmotionNet

    ckpt = read_checkpoint(path)
    model = EmotionNet(ckpt.model_config)
    try:
        model.load_state_dict(ckpt.state)
    except Exception as e:  # noqa: BLE001 - e.g. a file edited by hand
        raise MultiNetError(f"{ckpt.path}: the weights do not fit the file's own model_config "
                            f"({_reason(e)})") from None
    model.eval()
    return model, replace(ckpt, state={}, resume={})


def _reason(e: Exception) -> str:
    """An exception's message on one line, cut short (torch's can run to pages)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."
