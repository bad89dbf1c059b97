"""The shipped default model reproduces the figures of its model card on FER2013."""

import json
from pathlib import Path

import pytest
from synth import FER2013, FERPLUS

from multinet_emotion.classifier import default_model_path
from multinet_emotion.datasets import DataConfig
from multinet_emotion.evaluate import EvalConfig, evaluate

METRICS = default_model_path().parent / "model_metrics.json"

pytestmark = [
    pytest.mark.skipif(not default_model_path().is_file(), reason="no default model shipped"),
    pytest.mark.skipif(not FER2013.is_dir(), reason="../shared/data/fer2013 absent"),
]


@pytest.mark.slow
@pytest.mark.parametrize("split, ferplus", [("test", None), ("test-ferplus", FERPLUS)])
def test_model_card_figures_are_reproduced(split, ferplus, tmp_path):
    recorded = json.loads(METRICS.read_text())["figures"][split]
    if ferplus is not None and not Path(ferplus).is_dir():
        pytest.skip("../shared/data/ferplus absent")
    r = evaluate(EvalConfig(model=default_model_path(), split="test", ferplus=ferplus,
                            out=tmp_path / "report", data=DataConfig(path=FER2013)))
    assert r["n"] == recorded["n"]
    assert r["accuracy"] == pytest.approx(recorded["accuracy"], abs=0.002)
    assert r["macro_f1"] == pytest.approx(recorded["macro_f1"], abs=0.003)
