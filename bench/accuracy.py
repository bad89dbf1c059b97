"""Accuracy of any model file on any dataset: the figures of the model card, rerunnable.

    python bench/accuracy.py                       # the shipped model on ../shared/data/fer2013
    python bench/accuracy.py --model runs/x/best.pt --splits val test
    python bench/accuracy.py --model m.onnx --data my_faces/ --splits all
    python bench/accuracy.py --model new.onnx --against old.onnx   # is the new file better?

Prints accuracy, macro F1 and per-class recall for each split (FER2013: val = PublicTest,
test = PrivateTest), and for the FER+ majority labels of the test images when the FER+
folder is found. Full reports (JSON, Markdown, confusion PNGs) go to reports/accuracy/.
``--against`` scores a second model on the same faces (each read at its own size) and prints,
per split, the faces only one of the two gets right and an exact McNemar test on them: the
chance of a split at least that uneven if the two were equally accurate.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from multinet_emotion import MultiNetError
from multinet_emotion.emotions import EMOTIONS
from multinet_emotion.runtime.classifier import default_model_path, model_file
from multinet_emotion.training.datasets import DataConfig, load_dataset, relabel_ferplus
from multinet_emotion.training.evaluate import EvalConfig, evaluate, model_facts, predict_probs
from multinet_emotion.training.export import parse_class_bias

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar test: the chance, if either model were as likely as the other
    to be the one right on a face where they disagree, of a split at least this uneven."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def right_per_face(model: Path, data: Path, runs: list[tuple[str, Path | None]], tta_flip: bool,
                   bias) -> dict[str, dict[str, bool]]:
    """For each split of ``runs``: face (source name) -> whether ``model`` gets it right."""
    size, disgust = model_facts(model)
    dataset = load_dataset(DataConfig(path=data, image_size=size, disgust=disgust))
    torch_only = model.suffix != ".onnx"  # flip and offsets are options of checkpoints only
    out = {}
    for split, ferplus in runs:
        faces = dataset.split(split)
        if ferplus is not None:
            faces, _ = relabel_ferplus(faces, ferplus)
        probs, _ = predict_probs(model, faces.images, tta_flip and torch_only,
                                 class_bias=bias if torch_only else None)
        out[f"{split}-ferplus" if ferplus else split] = dict(zip(
            faces.sources, (probs.argmax(1) == faces.labels).tolist()))
    return out


def paired(a: dict[str, bool], b: dict[str, bool]) -> dict:
    """Counts of the faces both models were scored on, and the McNemar p of the disagreements."""
    common = sorted(set(a) & set(b))
    ra = np.array([a[k] for k in common], bool)
    rb = np.array([b[k] for k in common], bool)
    only_a, only_b = int((ra & ~rb).sum()), int((~ra & rb).sum())
    return {"n": len(common), "both_right": int((ra & rb).sum()), "only_model": only_a,
            "only_against": only_b, "accuracy_model": float(ra.mean()) if common else 0.0,
            "accuracy_against": float(rb.mean()) if common else 0.0,
            "mcnemar_p": mcnemar_p(only_a, only_b)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=model_file, default=default_model_path())
    p.add_argument("--data", type=Path, default=SHARED / "fer2013")
    p.add_argument("--ferplus", type=Path, default=SHARED / "ferplus",
                   help="FER+ folder (scored on the test split when present); 'none' to skip")
    p.add_argument("--splits", nargs="+", default=["val", "test"])
    p.add_argument("--tta-flip", action="store_true", help="PyTorch checkpoints only")
    p.add_argument("--class-bias", default=None, metavar="B1,..,B6|FILE.json",
                   help="per-class logit offsets (PyTorch checkpoints only; bench/class_bias.py)")
    p.add_argument("--single-pass", action="store_true",
                   help="an .onnx model without its mirror-image pass: the copy the web app "
                        "runs (serve without --mirror-pass)")
    p.add_argument("--against", type=model_file, default=None, metavar="MODEL",
                   help="a second model scored on the same faces: faces only one gets right, "
                        "and whether the difference is more than chance (McNemar)")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "accuracy")
    p.add_argument("--json", type=Path, default=None, help="also write all figures here")
    args = p.parse_args(argv)

    runs = [(split, None) for split in args.splits]
    if str(args.ferplus) != "none" and args.ferplus.is_dir():  # FER+ majority rows too
        runs += [(split, args.ferplus) for split in args.splits if split in ("val", "test")]
    header = f"{'split':<16}{'n':>6}{'acc':>8}{'macroF1':>9}  " + " ".join(
        f"{e[:7]:>8}" for e in EMOTIONS)
    if args.single_pass:
        from multinet_emotion.runtime.onnx_graph import single_pass_model
        single = single_pass_model(args.model)
        print(f"single pass: {single}" if single != args.model else
              f"single pass: {args.model} has no mirror-image pass; measured as it is")
        args.model = single
    print(f"model: {args.model}\ndata:  {args.data}\nrecall per class:")
    print(header)
    figures = {}
    try:
        bias = parse_class_bias(args.class_bias) if args.class_bias else None
        size, disgust = model_facts(args.model)  # read the faces at the model's own size
        for split, ferplus in runs:
            name = f"{split}-ferplus" if ferplus else split
            r = evaluate(EvalConfig(model=args.model, split=split, ferplus=ferplus,
                                    tta_flip=args.tta_flip, class_bias=bias,
                                    out=args.out / name,
                                    data=DataConfig(path=args.data, image_size=size,
                                                    disgust=disgust)))
            figures[name] = r
            recalls = " ".join(f"{r['per_class'][e]['recall']:>8.3f}" for e in EMOTIONS)
            print(f"{name:<16}{r['n']:>6}{r['accuracy']:>8.4f}{r['macro_f1']:>9.4f}  {recalls}")
        if args.against is not None:
            mine = right_per_face(args.model, args.data, runs, args.tta_flip, bias)
            theirs = right_per_face(args.against, args.data, runs, args.tta_flip, bias)
            print(f"against: {args.against} (the same faces, each model at its own size)")
            print(f"{'split':<16}{'n':>6}{'acc':>8}{'against':>9}{'only this':>11}"
                  f"{'only against':>14}{'McNemar p':>11}")
            for name in mine:
                c = paired(mine[name], theirs[name])
                figures.setdefault("against", {"model": str(args.against)})[name] = c
                print(f"{name:<16}{c['n']:>6}{c['accuracy_model']:>8.4f}"
                      f"{c['accuracy_against']:>9.4f}{c['only_model']:>11}"
                      f"{c['only_against']:>14}{c['mcnemar_p']:>11.3f}")
    except MultiNetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    print(f"reports: {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
