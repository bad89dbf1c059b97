"""Robustness to webcam conditions: accuracy under each corruption of multinet_emotion.training.corruptions.

    python bench/robustness.py                             # the shipped model, FER2013 PrivateTest
    python bench/robustness.py --model runs/x/best.pt --json reports/robustness.json
    python bench/robustness.py --corruptions dim blur --limit 500

For the clean test images and for each corruption (dim room, side light, blur, JPEG, a turned
head, a hand at the chin, glasses, ...), scores the model on the test split (FER2013: the
PrivateTest images) against the original labels and, when the FER+ folder is found, against
the FER+ majority labels of the same images; prints accuracy and the drop from clean in
percentage points, and the mean drop over the corruptions. Corruptions are seeded (--seed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from multinet_emotion import MultiNetError
from multinet_emotion.emotions import DisgustPolicy
from multinet_emotion.progress import bar
from multinet_emotion.runtime.classifier import ClassifierConfig, default_model_path, load_model, model_file
from multinet_emotion.training.checkpoint import load_checkpoint
from multinet_emotion.training.corruptions import CORRUPTIONS, apply, describe, get
from multinet_emotion.training.datasets import DataConfig, Split, ferplus_majority_labels, load_dataset
from multinet_emotion.training.metrics import confusion_matrix, summarize

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

Predictor = Callable[[np.ndarray], np.ndarray]  # uint8 [N, S, S] -> probabilities [N, 6]


def load_predictor(model: Path, threads: int, batch_size: int) -> tuple[Predictor, int, DisgustPolicy]:
    """Load the model once: an ONNX export through the runtime classifier (load_model), a PyTorch
    checkpoint through what evaluate.predict_probs uses (checkpoint.load_checkpoint +
    torch_probs).
    Returns the predictor, the face size the model takes and its disgust policy."""
    if not model.is_file():
        raise MultiNetError(f"{model}: model file not found")
    if model.suffix == ".onnx":
        classifier = load_model(model, ClassifierConfig(threads=threads, max_batch=batch_size))
        return classifier.predict, classifier.input_size, DisgustPolicy(classifier.info.disgust)
    try:
        import torch

        from multinet_emotion.training.export import torch_probs
    except ImportError:
        raise MultiNetError(f"{model}: evaluating a PyTorch checkpoint needs the training extras "
                            "(scripts/setup.sh full), or pass the .onnx export") from None
    if threads > 0:
        torch.set_num_threads(threads)
    net, ckpt = load_checkpoint(model)
    return (lambda images: torch_probs(net, images, batch_size=batch_size),
            net.config.image_size, ckpt.disgust)


def score(labels: np.ndarray, predicted: np.ndarray) -> dict:
    s = summarize(confusion_matrix(labels, predicted))
    return {"accuracy": s["accuracy"], "macro_f1": s["macro_f1"], "n": s["n"]}


class Table:
    """The printed table, a line at a time (each row as soon as its condition is scored):
    corruption, severity, then accuracy and its drop from clean in percentage points on the
    original labels and, when scored, on the FER+ labels."""

    def __init__(self, names: list[str], ferplus: bool) -> None:
        self.ferplus = ferplus
        self.width = max(len(s) for s in ["severity", "none", *map(describe, names)]) + 2
        head = f"{'corruption':<16}{'severity':<{self.width}}{'acc':>7}{'drop':>7}"
        self.head = head + (f"{'acc FER+':>10}{'drop':>7}" if ferplus else "")
        self.rule = "-" * len(self.head)

    def _cells(self, figures: dict, clean: bool = False) -> str:
        text = ""
        for labels, width in (("original", 7), ("ferplus", 10)):
            if labels == "ferplus" and not self.ferplus:
                break
            f = figures[labels]
            drop = "" if clean else f"{f['drop_points']:.1f}"
            text += f"{f['accuracy']:>{width}.4f}{drop:>7}"
        return text.rstrip()

    def header(self) -> str:
        return f"{self.head}\n{self.rule}"

    def row(self, row: dict) -> str:
        return (f"{row['corruption']:<16}{row['severity']:<{self.width}}"
                + self._cells(row, clean=row["corruption"] == "clean"))

    def footer(self, summary: dict, n: int) -> str:
        label = f"mean over {n} corruption{'s' if n > 1 else ''}"
        return f"{self.rule}\n{label:<{16 + self.width}}" + self._cells(summary)


def run(predict: Predictor, split: Split, ferplus: tuple[np.ndarray, np.ndarray] | None,
        names: list[str], seed: int, batch_size: int) -> list[dict]:
    """One row per condition ("clean" first): accuracy and macro F1 on the original labels and
    on the FER+ labels, and the accuracy drop from clean in points. Prints the table."""
    rows: list[dict] = []
    conditions = ["clean", *names]
    table = Table(names, ferplus is not None)
    print(table.header(), flush=True)
    progress = bar(len(conditions) * len(split), desc="robustness", unit="img")
    try:
        for name in conditions:
            progress.set_postfix(corruption=name)
            t0 = time.perf_counter()
            images = split.images if name == "clean" else apply(name, split.images, seed=seed)
            predicted = np.empty(len(split), np.int64)
            for i in range(0, len(split), batch_size):
                predicted[i:i + batch_size] = predict(images[i:i + batch_size]).argmax(1)
                progress.update(len(images[i:i + batch_size]))
            row = {"corruption": name, "severity": "none" if name == "clean" else describe(name),
                   "original": score(split.labels, predicted)}
            if ferplus is not None:
                index, labels = ferplus
                row["ferplus"] = score(labels, predicted[index])
            for labels in ("original", "ferplus"):
                if labels in row:
                    clean = (rows[0] if rows else row)[labels]["accuracy"]
                    row[labels]["drop_points"] = 100.0 * (clean - row[labels]["accuracy"])
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            progress.write(table.row(row))  # above the bar, which stays at the bottom
            sys.stdout.flush()
    finally:
        progress.close()
    if names:
        print(table.footer(summary(rows), len(names)), flush=True)
    return rows


def summary(rows: list[dict]) -> dict:
    """Mean accuracy and mean drop over the corruptions (the rows after "clean")."""
    out = {}
    for labels in ("original", "ferplus"):
        corrupted = [r[labels] for r in rows[1:] if labels in r]
        if corrupted:
            out[labels] = {"accuracy": float(np.mean([c["accuracy"] for c in corrupted])),
                           "drop_points": float(np.mean([c["drop_points"] for c in corrupted]))}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=model_file, default=default_model_path(),
                   help="an exported .onnx model or a PyTorch checkpoint (.pt)")
    p.add_argument("--data", type=Path, default=SHARED / "fer2013",
                   help="dataset (its test split is scored; FER2013: PrivateTest)")
    p.add_argument("--ferplus", type=Path, default=SHARED / "ferplus",
                   help="FER+ folder (also score the FER+ majority labels when present); 'none' "
                        "to skip")
    p.add_argument("--corruptions", nargs="+", default=list(CORRUPTIONS), metavar="NAME",
                   help=f"which corruptions (default: all): {', '.join(CORRUPTIONS)}")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="a seeded random sample of N test images (quicker)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random corruption choices")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=0,
                   help="inference threads (0 = the runtime's default: all cores)")
    p.add_argument("--single-pass", action="store_true",
                   help="an .onnx model without its mirror-image pass: the copy the web app "
                        "runs (serve without --mirror-pass)")
    p.add_argument("--json", type=Path, default=None, help="also write the table here as JSON")
    args = p.parse_args(argv)

    try:
        names = list(dict.fromkeys(n for n in args.corruptions if n != "clean"))
        for name in names:
            get(name)  # unknown names fail before anything is loaded
        if args.limit is not None and args.limit < 1:
            raise MultiNetError(f"--limit {args.limit}: must be at least 1")
        if args.batch_size < 1:
            raise MultiNetError(f"--batch-size {args.batch_size}: must be at least 1")
        if args.single_pass:
            from multinet_emotion.runtime.onnx_graph import single_pass_model
            args.model = single_pass_model(args.model)
            print(f"single pass: {args.model}")
        # faces are read at the size the model takes
        predict, size, disgust = load_predictor(args.model, args.threads, args.batch_size)
        data = load_dataset(DataConfig(path=args.data, image_size=size, disgust=disgust))
        split = data.split("test")
        if args.limit is not None:
            # a seeded random sample: the folders list the classes one after another
            pick = np.random.default_rng(args.seed).choice(len(split), min(args.limit, len(split)),
                                                          replace=False)
            split = split.subset(np.sort(pick))
        ferplus = None
        excluded = 0
        if str(args.ferplus) != "none" and args.ferplus.is_dir():
            ferplus = ferplus_majority_labels(split, args.ferplus)
            excluded = len(split) - len(ferplus[0])
            if not len(ferplus[0]):
                raise MultiNetError(f"{args.ferplus}: no test image has a FER+ label; pass "
                                    "--ferplus none for a dataset FER+ does not cover")
        print(f"model: {args.model}\ndata:  {args.data} (test split, n={len(split)}"
              + (f"; FER+ majority labels for {len(ferplus[0])}, {excluded} without" if ferplus
                 else "; no FER+ labels") + f")\nseed:  {args.seed}")
        rows = run(predict, split, ferplus, names, args.seed, args.batch_size)
    except MultiNetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        report = {"model": str(args.model), "data": str(args.data), "split": "test",
                  "n": len(split), "n_ferplus": len(ferplus[0]) if ferplus else None,
                  "ferplus_excluded": excluded if ferplus else None, "seed": args.seed,
                  "limit": args.limit, "rows": rows, "mean_over_corruptions": summary(rows)}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"json: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
