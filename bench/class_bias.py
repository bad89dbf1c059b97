"""Fit per-class logit offsets on the validation split (PublicTest), so that every emotion
gets its share of predictions: maximises validation macro F1 while giving up at most
--max-accuracy-drop of validation accuracy. The test split is never looked at.

    python bench/class_bias.py --model runs/x/best.pt --tta-flip --json reports/bias.json
    multinet-emotion export --model runs/x/best.pt --class-bias reports/bias.json ...
    # a model exported elsewhere (a GPU run): fit on the .onnx, add the offsets to it
    python bench/class_bias.py --model model.onnx --json reports/bias.json
    multinet-emotion export --model model.onnx --class-bias reports/bias.json --out biased.onnx

Prints validation accuracy, macro F1 and per-class recall before and after. A model file
that carries class offsets already has them undone first: the offsets fitted are the whole
ones to build into the network's output (export them from the file without offsets).

    # negative states weighed in: FER+ macro F1 + W x mean recall of angry, fear and sad
    # under the original labels, for each W (the trade-off table; the last W is written)
    python bench/class_bias.py --model src/multinet_emotion/assets/student.onnx \
        --ferplus ../shared/data/ferplus \
        --negative-weight 0,0.25,0.5,1 --max-accuracy-drop 0.01 --json reports/bias.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from multinet_emotion import MultiNetError
from multinet_emotion.emotions import EMOTIONS
from multinet_emotion.training.datasets import DataConfig, load_dataset, relabel_ferplus
from multinet_emotion.training.evaluate import model_facts, predict_probs
from multinet_emotion.training.ferplus import ferplus_majority_labels
from multinet_emotion.training.metrics import (
    NEGATIVE_STATES,
    apply_class_bias,
    confusion_matrix,
    fit_class_bias,
    mean_recall,
    summarize,
)

ROOT = Path(__file__).resolve().parents[1]


#: The negative states whose recall under the original labels --negative-weight weighs in.
NEGATIVE = [EMOTIONS.index(e) for e in NEGATIVE_STATES]


def model_file_offsets(model: Path) -> tuple[float, ...] | None:
    """The class offsets an exported model file carries in its metadata (None: none)."""
    if model.suffix != ".onnx":
        return None
    from multinet_emotion.runtime.classifier import load_model
    return load_model(model).info.class_bias


def negative_figures(probs: np.ndarray, ferplus: np.ndarray, original: np.ndarray) -> dict:
    """FER+ accuracy and macro F1, original-label accuracy and mean recall of the negative
    states, of the same predictions."""
    pred = probs.argmax(1)
    f = summarize(confusion_matrix(ferplus, pred))
    o = summarize(confusion_matrix(original, pred))
    return {"ferplus_accuracy": f["accuracy"], "ferplus_macro_f1": f["macro_f1"],
            "original_accuracy": o["accuracy"], "negative_recall": mean_recall(o, NEGATIVE_STATES)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="a .pt checkpoint, or an exported .onnx")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "fer2013")
    p.add_argument("--tta-flip", action="store_true")
    p.add_argument("--ferplus", type=Path, default=None,
                   help="fit against the FER+ majority labels of the validation images (the "
                        "FER+ folder); default: the dataset's own labels")
    p.add_argument("--max-accuracy-drop", type=float, default=0.005,
                   help="validation accuracy the offsets may cost (default 0.005 = 0.5 points)")
    p.add_argument("--negative-weight", default=None, metavar="W[,W...]",
                   help="fit for FER+ macro F1 + W x the mean recall of angry, fear and sad "
                        "under the original labels (the same validation images; needs "
                        "--ferplus); several weights print the trade-off, and the last "
                        "one's offsets are written")
    p.add_argument("--json", type=Path, required=True, help="write the offsets and figures here")
    args = p.parse_args(argv)
    if args.negative_weight is not None and args.ferplus is None:
        p.error("--negative-weight needs --ferplus (FER+ labels for F1, the original ones for "
                "the negative states' recall)")
    try:
        if args.model.suffix == ".onnx" and args.tta_flip:
            raise MultiNetError(f"{args.model}: an exported model has its flip inside (or "
                                "not): leave out --tta-flip")
        size, disgust = model_facts(args.model)
        val = load_dataset(DataConfig(path=args.data, image_size=size,
                                      disgust=disgust)).split("val")
        original = val.labels
        if args.ferplus is not None:
            keep, _ = ferplus_majority_labels(val, args.ferplus)
            original = val.labels[keep]
            val, _ = relabel_ferplus(val, args.ferplus)
        probs, _ = predict_probs(args.model, val.images, args.tta_flip)
        built_in = model_file_offsets(args.model)
        if built_in is not None:  # fit the whole offsets, from the network's own output
            probs = apply_class_bias(probs, -np.asarray(built_in))
            print(f"{args.model}: its own class offsets ({', '.join(f'{b:+.2f}' for b in built_in)})"
                  " are undone; the offsets below replace them")
        weights = [float(w) for w in args.negative_weight.split(",")] \
            if args.negative_weight else []
    except MultiNetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError:
        p.error(f"--negative-weight {args.negative_weight}: comma-separated numbers")
    tradeoff = []
    for w in weights:
        b, _ = fit_class_bias(probs, val.labels, args.max_accuracy_drop,
                              recall_of=(original, NEGATIVE, w))
        tradeoff.append({"weight": w, "class_bias": [float(x) for x in b],
                         **negative_figures(apply_class_bias(probs, b), val.labels, original)})
    if tradeoff:
        print(f"trade-off on validation (n={len(val)}): weight, FER+ accuracy, FER+ macro F1, "
              "original-label accuracy, mean recall of angry/fear/sad (original labels)")
        base = negative_figures(probs, val.labels, original)
        for name, row in [("none", base)] + [(f"{r['weight']:g}", r) for r in tradeoff]:
            print(f"  {name:>6}: {row['ferplus_accuracy']:.4f}  {row['ferplus_macro_f1']:.4f}  "
                  f"{row['original_accuracy']:.4f}  {row['negative_recall']:.3f}")
        bias, fit = np.asarray(tradeoff[-1]["class_bias"]), {"negative_weight": weights[-1],
                                                             "tradeoff": tradeoff}
    else:
        bias, fit = fit_class_bias(probs, val.labels, args.max_accuracy_drop)
    flip = "inside the model" if args.model.suffix == ".onnx" else \
        ("yes" if args.tta_flip else "no")
    print(f"model: {args.model} (flip: {flip}), validation n={len(val)}")
    print(f"{'':<8}{'acc':>8}{'macroF1':>9}  " + " ".join(f"{e[:7]:>8}" for e in EMOTIONS))
    rows = {}
    for name, pr in (("before", probs), ("after", apply_class_bias(probs, bias))):
        s = summarize(confusion_matrix(val.labels, pr.argmax(1)))
        rows[name] = s
        print(f"{name:<8}{s['accuracy']:>8.4f}{s['macro_f1']:>9.4f}  "
              + " ".join(f"{s['per_class'][e]['recall']:>8.3f}" for e in EMOTIONS))
    print("offsets: " + ", ".join(f"{e} {b:+.2f}" for e, b in zip(EMOTIONS, bias)))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "class_bias": [float(b) for b in bias], "labels": list(EMOTIONS),
        "model": str(args.model), "tta_flip": args.tta_flip,
        "fitted_on": "val, FER+ majority labels" if args.ferplus else "val", **fit,
        "val_before": {k: rows["before"][k] for k in ("accuracy", "macro_f1", "per_class")},
        "val_after": {k: rows["after"][k] for k in ("accuracy", "macro_f1", "per_class")},
    }, indent=2))
    print(f"written: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
