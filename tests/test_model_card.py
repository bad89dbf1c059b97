"""bench/model_card.py: the stage commands it writes repeat the model's shape."""

import importlib.util
import json
from pathlib import Path

from multinet_emotion.runtime.classifier import default_model_path, load_model

ROOT = Path(__file__).resolve().parents[1]


def _model_card():
    spec = importlib.util.spec_from_file_location("model_card", ROOT / "bench" / "model_card.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_command_names_every_model_setting_off_its_default():
    card = _model_card()
    config = {"data": {"path": "pack/fer2013"}, "labels": "ferplus", "epochs": 60,
              "model": {"arch": "hybrid", "image_size": 44, "hidden": 256, "dropout": 0.5,
                        "stem": "imagenet", "normalization": "imagenet"}}
    command = card.train_command(config, Path("runs/x"))
    assert command.startswith("multinet-emotion train --data pack/fer2013 --out runs/x")
    for flag in ("--image-size 44", "--hidden 256", "--stem imagenet",
                 "--normalization imagenet", "--labels ferplus"):
        assert flag in command, flag
    assert "--dropout" not in command and "--arch" not in command  # defaults left out
    config["model"]["image_size"] = 48
    assert "--image-size" not in card.train_command(config, Path("runs/x"))


def test_the_last_stage_of_the_shipped_model_gives_its_face_size():
    path = default_model_path()
    ledger = json.loads((path.parent / "training_stages.json").read_text())
    size = load_model(path).input_size
    last = ledger["stages"][-1]["command"]
    assert (f"--image-size {size}" in last) == (size != 48), last
