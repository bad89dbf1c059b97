"""The shipped default model reproduces the figures recorded with it on FER2013.

The model card's full PrivateTest figures take several minutes on a 2-core CPU (int8 with the
mirror image averaged in); the suite reproduces the quick check that scripts/ship_model.sh
records beside them (`python bench/model_card.py --check-only`): the same file, identified by
its sha256, scored on a seeded sample of PrivateTest on both label sets.
"""

import hashlib
import json
from pathlib import Path

import pytest
from synth import FER2013, FERPLUS

from multinet_emotion.runtime.classifier import default_model_path, load_model, model_file
from multinet_emotion.training.datasets import DataConfig
from multinet_emotion.training.evaluate import EvalConfig, evaluate, model_facts

METRICS = default_model_path().parent / "model_metrics.json"
LEDGER = default_model_path().parent / "training_stages.json"

pytestmark = [
    pytest.mark.skipif(not default_model_path().is_file(), reason="no default model shipped"),
    pytest.mark.skipif(not FER2013.is_dir(), reason="../shared/data/fer2013 absent"),
]


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_the_recorded_figures_belong_to_the_shipped_file():
    check = json.loads(METRICS.read_text())["check"]
    digest = _sha256(default_model_path())
    assert check["model_sha256"] == digest, "model_metrics.json was measured on another file"
    assert json.loads(LEDGER.read_text())["model_sha256"] == digest
    assert check["sample"] >= 300


@pytest.mark.slow
@pytest.mark.parametrize("split, ferplus", [("test", None), ("test-ferplus", FERPLUS)])
def test_model_card_figures_are_reproduced(split, ferplus, tmp_path):
    check = json.loads(METRICS.read_text())["check"]
    if ferplus is not None and not Path(ferplus).is_dir():
        pytest.skip("../shared/data/ferplus absent")
    recorded = check[split]
    r = evaluate(EvalConfig(model=default_model_path(), split="test", ferplus=ferplus,
                            sample=check["sample"], seed=check["seed"],
                            out=tmp_path / "report",
                            data=DataConfig(path=FER2013, image_size=model_facts(default_model_path())[0])))
    assert r["n"] == recorded["n"]
    # int8 kernels differ a little between CPUs (VNNI or not): one face in 500 is 0.002
    assert r["accuracy"] == pytest.approx(recorded["accuracy"], abs=0.005)
    assert r["macro_f1"] == pytest.approx(recorded["macro_f1"], abs=0.01)


STUDENT = model_file("student")
STUDENT_METRICS = STUDENT.with_name("student_metrics.json")


def test_the_students_recorded_figures_belong_to_the_shipped_student():
    record = json.loads(STUDENT_METRICS.read_text())
    assert record["sha256"] == _sha256(STUDENT), "student_metrics.json was measured on another file"
    assert record["size_mb"] == pytest.approx(STUDENT.stat().st_size / 1e6, abs=0.01)
    assert load_model("student").info.input_size == model_facts(STUDENT)[0]


@pytest.mark.slow
def test_the_students_figures_are_reproduced():
    """``python bench/student.py --write`` recorded a seeded sample's figures beside the full
    ones; the same sample scored now gives them (the student is fast: both label sets)."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from student import scores

    check = json.loads(STUDENT_METRICS.read_text())["check"]
    if not Path(FERPLUS).is_dir():
        pytest.skip("../shared/data/ferplus absent")
    now = scores(STUDENT, FER2013, FERPLUS, check["sample"])
    for split in ("test", "test-ferplus"):
        assert now[split]["n"] == check[split]["n"]
        assert now[split]["accuracy"] == pytest.approx(check[split]["accuracy"], abs=0.005)
        assert now[split]["macro_f1"] == pytest.approx(check[split]["macro_f1"], abs=0.01)
