"""Does the hybrid help, and which labels to train on? Same recipe, data and seed for every
row; PrivateTest scored on both label sets.

    python bench/ablation.py --minutes 15            # equal wall time: hybrid, resnet50, vgg16, small
    python bench/ablation.py --epochs 3 --archs vgg16 small
    python bench/ablation.py --labels-tradeoff --archs small --minutes 8
                                                      # fer2013, mix 0.25/0.5/0.75, ferplus
    python bench/ablation.py --minutes 8 --archs small small-wide \
        --teacher src/multinet_emotion/assets/model.onnx   # students taught by the hybrid

``--teacher MODEL.onnx`` trains every arch of the run as a student of that model (``train
--teacher``, its defaults for the mix and the temperature; the teacher's outputs are
computed once and cached). ``--minutes M`` gives every arch the same training time: a
short speed probe measures each arch's training images/s here, and its schedule (warm-up,
cosine decay to zero) is sized to M minutes. Runs go to
~/.cache/multinet-emotion/ablation/<name> and resume when interrupted (rerun the same
command). ``--json`` writes the table for the model card.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from multinet_emotion import MultiNetError
from multinet_emotion.training.datasets import DataConfig, load_dataset
from multinet_emotion.training.evaluate import EvalConfig, evaluate
from multinet_emotion.training.model import ModelConfig
from multinet_emotion.training.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
TRADEOFF = (("fer2013", 0.0), ("mix", 0.25), ("mix", 0.5), ("mix", 0.75), ("ferplus", 1.0))


def speed(arch: str, batch_size: int, stem: str = "imagenet", steps: int = 6) -> float:
    """Training images/s of ``arch`` on this machine (forward, backward, AdamW step)."""
    import torch

    from multinet_emotion.training.model import build_model
    from multinet_emotion.training.train import autocast_dtype

    model = build_model(ModelConfig(arch=arch, stem=stem)).to(
        memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    dtype = autocast_dtype("auto", torch.device("cpu"))
    x = (torch.rand(batch_size, 1, 48, 48) * 255).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 6, (batch_size,))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return batch_size / sorted(times[1:])[len(times[1:]) // 2]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "fer2013")
    p.add_argument("--ferplus", type=Path, default=ROOT.parent / "shared" / "data" / "ferplus")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, default=None, help="the same epochs for each")
    budget.add_argument("--minutes", type=float, default=None,
                        help="the same training time for each (default 15)")
    p.add_argument("--archs", nargs="+", default=["hybrid", "resnet50", "vgg16", "small"])
    p.add_argument("--labels-tradeoff", action="store_true",
                   help="instead of archs, compare training targets (first --archs entry)")
    p.add_argument("--out", type=Path,
                   default=Path.home() / ".cache" / "multinet-emotion" / "ablation")
    p.add_argument("--stem", choices=("face", "imagenet"), default="imagenet",
                   help="backbone stems (default: the shipped model's, imagenet)")
    p.add_argument("--normalization", choices=("face", "imagenet"), default="imagenet",
                   help="face normalisation (default: the shipped model's, imagenet)")
    p.add_argument("--teacher", type=Path, default=None,
                   help="train each arch as a student of this exported model (train --teacher)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", type=Path, default=None, help="also write the table here")
    args = p.parse_args(argv)
    if args.epochs is None and args.minutes is None:
        args.minutes = 15.0

    rows = []
    try:
        if args.epochs is not None and args.epochs < 1 or args.minutes is not None and \
                args.minutes <= 0:
            raise MultiNetError("--epochs and --minutes must be positive")
        for arch in args.archs:
            ModelConfig(arch=arch)  # unknown names fail before any training
        if args.teacher is not None and not args.teacher.is_file():
            raise MultiNetError(f"--teacher {args.teacher}: no such model file")
        data = load_dataset(DataConfig(path=args.data, seed=args.seed))
        n_train = len(data.split("train"))
        plans = [(args.archs[0], labels, weight) for labels, weight in TRADEOFF] \
            if args.labels_tradeoff else [(arch, "auto", 0.5) for arch in args.archs]
        for arch, labels, weight in plans:
            epochs, steps = args.epochs, 0
            if args.minutes is not None:  # size the schedule to the time budget
                per_s = speed(arch, args.batch_size, args.stem)
                total = max(1, int(args.minutes * 60 * per_s / args.batch_size))
                full = n_train // args.batch_size
                epochs = max(1, math.ceil(total / full))
                steps = math.ceil(total / epochs)
            name = f"{arch}-{args.stem}-{labels}{weight if labels == 'mix' else ''}-" + (
                f"m{args.minutes:g}" if args.minutes is not None else f"e{args.epochs}") + (
                "-taught" if args.teacher is not None else "")
            out = args.out / name
            history_file = out / "history.json"
            done = history_file.is_file() and len(json.loads(history_file.read_text())
                                                   ["epochs"]) >= epochs
            if not done:
                print(f"{name}: {epochs} epoch(s)" + (f" of {steps} steps" if steps else ""),
                      flush=True)
                train(TrainConfig(out=out, epochs=epochs, seed=args.seed, labels=labels,
                                  mix_weight=weight, ferplus=args.ferplus,
                                  batch_size=args.batch_size, max_steps_per_epoch=steps,
                                  resume=(out / "last.pt").is_file(), teacher=args.teacher,
                                  minutes=args.minutes or 0.0,  # held to, even if slowed
                                  model=ModelConfig(arch=arch, stem=args.stem,
                                                    normalization=args.normalization),
                                  data=DataConfig(path=args.data, seed=args.seed)), data)
            history = json.loads(history_file.read_text())
            figures = {}
            for key, ferplus in (("test", None), ("test-ferplus", args.ferplus)):
                if ferplus is not None and not ferplus.is_dir():
                    continue
                figures[key] = evaluate(EvalConfig(model=out / "best.pt", split="test",
                                                   ferplus=ferplus, out=out / key,
                                                   data=DataConfig(path=args.data)))
            best = history["epochs"][history["best_epoch"] - 1]
            speeds = sorted(e["images_per_s"] for e in history["epochs"])
            fp = figures.get("test-ferplus")
            rows.append({
                "arch": arch + (" (taught)" if args.teacher is not None else ""),
                "stem": args.stem, "labels": labels if labels != "mix" else f"mix {weight}",
                "params_millions": _millions_of_parameters(arch),
                "images_per_s": speeds[len(speeds) // 2],
                "minutes": history["wall_time_s"] / 60,
                "val_accuracy": best["val_accuracy"], "val_macro_f1": best["val_macro_f1"],
                "test_accuracy": figures["test"]["accuracy"],
                "test_macro_f1": figures["test"]["macro_f1"],
                "test_accuracy_ferplus": fp["accuracy"] if fp else None,
                "neutral_recall_ferplus": fp["per_class"]["neutral"]["recall"] if fp else None})
    except MultiNetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    budget_text = f"{args.minutes:g} minutes" if args.minutes is not None \
        else f"{args.epochs} epochs"
    print(f"same recipe, {budget_text} each, seed {args.seed}; PrivateTest")
    print(f"{'arch':<10}{'labels':<10}{'params':>8}{'img/s':>8}{'min':>6}{'val acc':>9}"
          f"{'test acc':>10}{'test FER+':>11}{'neutral':>9}")
    for r in rows:
        fp, nr = r["test_accuracy_ferplus"], r["neutral_recall_ferplus"]
        print(f"{r['arch']:<10}{r['labels']:<10}{r['params_millions']:>7.1f}M"
              f"{r['images_per_s']:>8.1f}{r['minutes']:>6.1f}{r['val_accuracy']:>9.4f}"
              f"{r['test_accuracy']:>10.4f}{'' if fp is None else f'{fp:.4f}':>11}"
              f"{'' if nr is None else f'{nr:.3f}':>9}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        command = "python bench/ablation.py " + " ".join(argv if argv is not None else sys.argv[1:])
        args.json.write_text(json.dumps({"epochs": args.epochs, "minutes": args.minutes,
                                         "seed": args.seed, "command": command.strip(),
                                         "rows": rows}, indent=2))
    return 0


def _millions_of_parameters(arch: str) -> float:
    from multinet_emotion.training.model import build_model
    return sum(p.numel() for p in build_model(ModelConfig(arch=arch)).parameters()) / 1e6


if __name__ == "__main__":
    sys.exit(main())
