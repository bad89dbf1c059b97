"""The compact student against the hybrid it was distilled from: the figures of the model
card's student section and of the README's model-choice table.

    python bench/student.py                      # PrivateTest, both label sets, and speed
    python bench/student.py --write --runs runs/student runs/student_mix --offsets bias.json
                                                 # ... and record them and the card
    python bench/student.py --student runs/s/student.onnx --hybrid other.onnx

For each model (the shipped files by default): accuracy and macro F1 on FER2013
PrivateTest with the original labels and with the FER+ majority labels, the mean recall of
angry, fear and sad under the original labels (the negative states the hybrid reads as
neutral), the file's size, and the native time a face takes with a batch of one on one ONNX
Runtime thread (median of --faces faces, the two models in turns), as shipped (mirror pass
inside) and as the web app runs it (single pass). ``--write`` records the figures in
``assets/student_metrics.json`` with the student's sha256 and a seeded-sample check that
the test suite reproduces. Robustness to webcam conditions: ``python bench/robustness.py
--model student``; in the browser: ``python bench/browser.py``; learners a server carries:
``python bench/load.py --model student``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from multinet_emotion.emotions import EMOTIONS
from multinet_emotion.errors import MultiNetError
from multinet_emotion.files import file_sha256
from multinet_emotion.runtime.classifier import ClassifierConfig, load_model, model_file
from multinet_emotion.runtime.onnx_graph import single_pass_model
from multinet_emotion.training.datasets import DataConfig
from multinet_emotion.training.evaluate import EvalConfig, evaluate, model_facts
from multinet_emotion.training.metrics import NEGATIVE_STATES

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "fer2013"
FERPLUS = ROOT.parent / "shared" / "data" / "ferplus"
#: the seeded sample the test suite scores again (tests/test_shipped_model.py)
CHECK_SAMPLE, CHECK_SEED = 500, 0


def scores(model: Path, data: Path, ferplus: Path, sample: int = 0) -> dict:
    """Accuracy, macro F1 and recalls on PrivateTest, original and FER+ labels."""
    size = model_facts(model)[0]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, fp in (("test", None), ("test-ferplus", ferplus)):
            r = evaluate(EvalConfig(model=model, split="test", ferplus=fp, sample=sample,
                                    seed=CHECK_SEED, out=Path(tmp) / name,
                                    data=DataConfig(path=data, image_size=size)))
            out[name] = {"n": r["n"], "accuracy": r["accuracy"], "macro_f1": r["macro_f1"],
                         "recall": {e: r["per_class"][e]["recall"] for e in EMOTIONS}}
    out["negative_recall"] = float(np.mean([out["test"]["recall"][e] for e in NEGATIVE_STATES]))
    return out


def per_face_ms(models: dict[str, Path], faces: int) -> dict[str, float]:
    """Median native milliseconds a face, batch of one, one thread, models in turns."""
    loaded = {k: load_model(p, ClassifierConfig(threads=1)) for k, p in models.items()}
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {k: [] for k in loaded}
    for m in loaded.values():  # the first runs set up the kernels
        m.predict(rng.integers(0, 256, (1, m.input_size, m.input_size), dtype=np.uint8))
    for _ in range(faces):
        for k, m in loaded.items():
            crop = rng.integers(0, 256, (1, m.input_size, m.input_size), dtype=np.uint8)
            t = time.perf_counter()
            m.predict(crop)
            times[k].append((time.perf_counter() - t) * 1000)
    return {k: round(statistics.median(v), 2) for k, v in times.items()}


def student_card(record: dict, runs: list[Path], offsets: Path | None) -> str:
    """The student's model card: what it is, its teacher, data, recipe, figures, limits."""
    from model_card import stage_of, train_command

    f, h = record["figures"], record["hybrid"]
    stages = []
    for run in runs:
        config = json.loads((run / "config.json").read_text())
        history = json.loads((run / "history.json").read_text())
        best = history.get("best_epoch")
        stage = stage_of(history, config, train_command(config, run), run.name)
        stages.append(f"{len(stages) + 1}. `{stage['command']}`: {stage['epochs']} epochs, "
                      f"the best on validation (epoch {best}) kept")
    bias = json.loads(offsets.read_text()) if offsets else None
    behind = 100 * (h["test-ferplus"]["accuracy"] - f["test-ferplus"]["accuracy"])
    teachers = {json.loads((run / "config.json").read_text()).get("teacher") for run in runs}
    hybrid = file_sha256(model_file("hybrid"))
    same = all(t and Path(t).is_file() and file_sha256(Path(t)) == hybrid for t in teachers)
    teacher = "the same sha256" if runs and same else "not checked: give --runs"
    rows = [("FER+ labels: accuracy", "test-ferplus", "accuracy", "{:.1%}"),
            ("FER+ labels: macro F1", "test-ferplus", "macro_f1", "{:.3f}"),
            ("original labels: accuracy", "test", "accuracy", "{:.1%}"),
            ("original labels: macro F1", "test", "macro_f1", "{:.3f}")]
    table = ["| PrivateTest | student | hybrid (teacher) |", "|---|---:|---:|"]
    table += [f"| {name} | {fmt.format(f[s][k])} | {fmt.format(h[s][k])} |"
              for name, s, k, fmt in rows]
    table += [f"| original labels: mean recall of {', '.join(NEGATIVE_STATES)} | "
              f"{f['negative_recall']:.3f} | {h['negative_recall']:.3f} |",
              f"| file (int8) | {record['size_mb']:.1f} MB | "
              f"{model_file('hybrid').stat().st_size / 1e6:.1f} MB |",
              f"| native ms a face, batch of 1, one thread: as shipped / single pass | "
              f"{record['per_face_ms']['student']:.2f} / "
              f"{record['per_face_ms']['student single pass']:.2f} | "
              f"{record['per_face_ms']['hybrid']:.2f} / "
              f"{record['per_face_ms']['hybrid single pass']:.2f} |"]
    recall = " ".join(f"{e} {f['test']['recall'][e]:.3f}" for e in EMOTIONS)
    offsets_text = ("" if bias is None else
                    f"\nClass offsets built into the file (`python bench/class_bias.py "
                    f"--negative-weight {bias.get('negative_weight')}`, fitted on PublicTest for "
                    f"FER+ macro F1 plus {bias.get('negative_weight')} x the original labels' "
                    "angry/fear/sad recall): "
                    + ", ".join(f"{e} {b:+.2f}" for e, b in zip(EMOTIONS, bias["class_bias"]))
                    + ".\n")
    return f"""# Model card: the student (`student.onnx`)

A compact CNN (`--arch small-wide`: four blocks of two 3x3 convolutions, 48-96-192-384
channels, 2.8 M parameters, 44x44 grey faces) distilled from the shipped hybrid (ResNet50 +
VGG16, `model.onnx`), which stays the reference and the teacher. `--model student` runs it
in `detect` and `serve`; the web app runs it in the learner's browser by default.

**Teacher and data.** FER2013's training faces (disgust dropped) with the webcam
augmentation; the targets mix the teacher's probabilities (softened at temperature 2, its
own class offsets undone) with the FER+ annotators' votes (`train --teacher model.onnx`,
docs/training.md). The teacher file is the shipped `model.onnx` ({teacher}).

**Recipe** (`python bench/student.py --write --runs ...` reads it from the runs):

{chr(10).join(stages) or "(the runs were not given)"}

Then `multinet-emotion export --model best.pt --tta-flip`, int8, and the class offsets
below (`multinet-emotion export --model student.onnx --class-bias offsets.json`).
{offsets_text}
**Figures** (`python bench/student.py`; FER2013 PrivateTest, six classes; this 2-core VM):

{chr(10).join(table)}

Recall per class, original labels: {recall}.

**Limits.** It is {behind:.1f} points of FER+ accuracy behind its teacher and, like it, reads
many subtle angry, fearful and sad faces as neutral (the original labels' recalls above);
FER+'s annotators read many of those faces as neutral too. Everything the hybrid's card
says about what the model reads, and about the law, holds for it.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--student", type=model_file, default=model_file("student"))
    p.add_argument("--hybrid", type=model_file, default=model_file("hybrid"))
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--ferplus", type=Path, default=FERPLUS)
    p.add_argument("--faces", type=int, default=200, help="faces timed per model (default 200)")
    p.add_argument("--write", action="store_true",
                   help="record the student's figures in assets/student_metrics.json and "
                        "write its card, assets/STUDENT_CARD.md")
    p.add_argument("--runs", type=Path, nargs="*", default=[],
                   help="--write: the student's training runs, in order (their config.json "
                        "and history.json give the card's recipe)")
    p.add_argument("--offsets", type=Path, default=None,
                   help="--write: the bench/class_bias.py JSON whose offsets are in the file")
    args = p.parse_args(argv)
    files = {"hybrid": args.hybrid, "student": args.student}
    try:
        figures = {k: scores(f, args.data, args.ferplus) for k, f in files.items()}
        speed = per_face_ms({**files, **{f"{k} single pass": single_pass_model(f)
                                         for k, f in files.items()}}, args.faces)
    except MultiNetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("FER2013 PrivateTest (six classes); native time a face: batch of one, one thread, "
          f"median of {args.faces}, models in turns")
    print(f"{'':10s}{'FER+ acc':>9s}{'FER+ F1':>9s}{'orig acc':>9s}{'orig F1':>9s}"
          f"{'neg rec':>9s}{'MB':>7s}{'ms/face':>9s}{'1 pass':>8s}")
    for k, f in files.items():
        g = figures[k]
        print(f"{k:10s}{g['test-ferplus']['accuracy']:9.1%}{g['test-ferplus']['macro_f1']:9.3f}"
              f"{g['test']['accuracy']:9.1%}{g['test']['macro_f1']:9.3f}"
              f"{g['negative_recall']:9.3f}{f.stat().st_size / 1e6:7.1f}{speed[k]:9.2f}"
              f"{speed[k + ' single pass']:8.2f}")
    print("negative recall: the mean recall of " + ", ".join(NEGATIVE_STATES) + " (original labels); "
          "per class: " + "; ".join(f"{k} " + " ".join(
              f"{e} {figures[k]['test']['recall'][e]:.3f}" for e in NEGATIVE_STATES) for k in files))
    if args.write:
        student = files["student"]
        record = {"model": student.name, "sha256": file_sha256(student),
                  "size_mb": round(student.stat().st_size / 1e6, 2),
                  "figures": figures["student"], "hybrid": figures["hybrid"],
                  "per_face_ms": speed,
                  "check": {"sample": CHECK_SAMPLE, "seed": CHECK_SEED,
                            **scores(student, args.data, args.ferplus, CHECK_SAMPLE)}}
        out = model_file("student").with_name("student_metrics.json")
        out.write_text(json.dumps(record, indent=2) + "\n")
        card = out.with_name("STUDENT_CARD.md")
        card.write_text(student_card(record, args.runs, args.offsets))
        print(f"written: {out}, {card}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
