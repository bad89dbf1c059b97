"""Does the hybrid help? Train the hybrid, ResNet50 alone and VGG16 alone with the same
recipe and budget, then print validation and test figures side by side.

    python bench/ablation.py --epochs 3                  # ~1.5 h of CPU here for all three
    python bench/ablation.py --epochs 3 --archs resnet50 vgg16

Runs go to ~/.cache/multinet-emotion/ablation/<arch>-e<epochs> and resume when
interrupted (rerun the same command). Figures: best-epoch validation (PublicTest) accuracy
and macro F1, PrivateTest accuracy and macro F1 of that epoch's checkpoint, training
images/s and wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from multinet_emotion import MultiNetError
from multinet_emotion.datasets import DataConfig
from multinet_emotion.evaluate import EvalConfig, evaluate
from multinet_emotion.model import ModelConfig
from multinet_emotion.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "fer2013")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--archs", nargs="+", default=["hybrid", "resnet50", "vgg16"])
    p.add_argument("--out", type=Path,
                   default=Path.home() / ".cache" / "multinet-emotion" / "ablation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the table here")
    args = p.parse_args(argv)

    rows = []
    try:
        for arch in args.archs:
            out = args.out / f"{arch}-e{args.epochs}"
            history_file = out / "history.json"
            done = history_file.is_file() and len(json.loads(history_file.read_text())
                                                   ["epochs"]) >= args.epochs
            if not done:
                train(TrainConfig(out=out, epochs=args.epochs, seed=args.seed,
                                  resume=(out / "last.pt").is_file(),
                                  model=ModelConfig(arch=arch),
                                  data=DataConfig(path=args.data, seed=args.seed)))
            history = json.loads(history_file.read_text())
            test = evaluate(EvalConfig(model=out / "best.pt", split="test", out=out / "test",
                                       data=DataConfig(path=args.data)))
            best = history["epochs"][history["best_epoch"] - 1]
            speeds = sorted(e["images_per_s"] for e in history["epochs"])
            rows.append((arch, best["val_accuracy"], best["val_macro_f1"], test["accuracy"],
                         test["macro_f1"], speeds[len(speeds) // 2],
                         history["wall_time_s"] / 60, _millions_of_parameters(arch)))
    except MultiNetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"same recipe, {args.epochs} epochs each, seed {args.seed}")
    print(f"{'arch':<10}{'params':>8}{'val acc':>9}{'val F1':>8}{'test acc':>10}{'test F1':>9}"
          f"{'img/s':>8}{'minutes':>9}")
    for arch, va, vf, ta, tf, speed, minutes, params in rows:
        print(f"{arch:<10}{params:>7.1f}M{va:>9.4f}{vf:>8.4f}{ta:>10.4f}{tf:>9.4f}{speed:>8.1f}"
              f"{minutes:>9.1f}")
    if args.json:
        keys = ("arch", "val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1",
                "images_per_s", "minutes", "params_millions")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"epochs": args.epochs, "seed": args.seed,
                                         "rows": [dict(zip(keys, r)) for r in rows]}, indent=2))
    return 0


def _millions_of_parameters(arch: str) -> float:
    from multinet_emotion.model import build_model
    return sum(p.numel() for p in build_model(ModelConfig(arch=arch)).parameters()) / 1e6


if __name__ == "__main__":
    sys.exit(main())
