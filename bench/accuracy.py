"""Accuracy of any model file on any dataset: the figures of the model card, rerunnable.

    python bench/accuracy.py                       # the shipped model on ../shared/data/fer2013
    python bench/accuracy.py --model runs/x/best.pt --splits val test
    python bench/accuracy.py --model m.onnx --data my_faces/ --splits all

Prints accuracy, macro F1 and per-class recall for each split (FER2013: val = PublicTest,
test = PrivateTest), and for the FER+ majority labels of the test images when the FER+
folder is found. Full reports (JSON, Markdown, confusion PNGs) go to reports/accuracy/.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from multinet_emotion import MultiNetError
from multinet_emotion.classifier import default_model_path
from multinet_emotion.datasets import DataConfig
from multinet_emotion.emotions import EMOTIONS
from multinet_emotion.evaluate import EvalConfig, evaluate, model_facts
from multinet_emotion.export import parse_class_bias

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, default=default_model_path())
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
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "accuracy")
    p.add_argument("--json", type=Path, default=None, help="also write all figures here")
    args = p.parse_args(argv)

    runs = [(split, None) for split in args.splits]
    if str(args.ferplus) != "none" and args.ferplus.is_dir():  # FER+ majority rows too
        runs += [(split, args.ferplus) for split in args.splits if split in ("val", "test")]
    header = f"{'split':<16}{'n':>6}{'acc':>8}{'macroF1':>9}  " + " ".join(
        f"{e[:7]:>8}" for e in EMOTIONS)
    if args.single_pass:
        from multinet_emotion.export import single_pass_model
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
    except MultiNetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    print(f"reports: {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
