"""Each setting stated once: options, environment variables and checks from the dataclasses."""

import argparse
import dataclasses
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from multinet_emotion import options
from multinet_emotion.app import Settings, create_app
from multinet_emotion.cli import build_parser, main
from multinet_emotion.emotions import ADJECTIVES, COLORS, EMOTIONS
from multinet_emotion.errors import MultiNetError
from multinet_emotion.training.config import ModelConfig, TrainConfig
from multinet_emotion.training.datasets import DataConfig
from multinet_emotion.training.evaluate import EvalConfig
from multinet_emotion.training.export import ExportConfig


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


@pytest.mark.parametrize("command, classes", [("train", (TrainConfig, ModelConfig, DataConfig)),
                                              ("serve", (Settings,)),
                                              ("export", (ExportConfig,)),
                                              ("evaluate", (EvalConfig, DataConfig))])
def test_every_setting_is_an_option_with_its_default_and_help(command, classes):
    p = _subparser(command)
    actions = {a.dest: a for a in p._actions if a.option_strings[:1] != ["--no-analysis"]}
    for cls in classes:
        for name, (f, spec, _kind, _optional) in options.specs(cls).items():
            if not spec.cli:
                assert name not in actions or cls is not Settings
                continue
            action = actions[name]
            assert options.flag_of(name, spec) in action.option_strings
            if spec.hidden:
                assert action.help == argparse.SUPPRESS
                continue
            assert spec.help in action.help
            if spec.env:  # the same setting's environment variable is named in the help
                assert options.env_of(name) in action.help
            if cls is not Settings and f.default is not dataclasses.MISSING and \
                    f.default is not None and not isinstance(f.default, bool):
                assert action.default == f.default  # the class's default, stated once
            if spec.choices:
                assert tuple(action.choices) == spec.choices


def test_train_options_fill_the_configs_and_are_checked_once():
    args = _subparser("train").parse_args(
        ["--data", "x", "--lr", "0.01", "--no-webcam", "--arch", "small", "--image-size", "40",
         "--no-dedupe", "--backbone-weights", "a.pth", "--backbone-weights", "b.pth"])
    t = TrainConfig(**options.values(TrainConfig, args))
    m = ModelConfig(**options.values(ModelConfig, args))
    d = DataConfig(**options.values(DataConfig, args))
    assert (t.lr, t.webcam, t.augment) == (0.01, False, True)
    assert (m.arch, m.image_size, m.backbone_weights) == ("small", 40, ["a.pth", "b.pth"])
    assert (str(d.path), d.dedupe, d.cache) == ("x", False, True)
    for bad, message in ((dict(lr=-0.1), "--lr -0.1: must be at least 0"),
                         (dict(mix_weight=1.5), "--mix-weight 1.5: must be 0 to 1"),
                         (dict(labels="votes"), "--labels 'votes': choose one of"),
                         (dict(patience=0), "--patience 0: must be at least 1")):
        with pytest.raises(MultiNetError, match=message):
            TrainConfig(**bad)
    with pytest.raises(MultiNetError, match="--dropout 1: must be at least 0 and below 1"):
        ModelConfig(dropout=1)


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "x", "--epochs", "0"], "--epochs 0: must be at least 1"),
    (["train", "--data", "x", "--val-fraction", "1"], "--val-fraction 1.0: must be above 0"),
    (["serve", "--check", "--port", "70000"], "--port 70000: must be 1 to 65535"),
    (["serve", "--check", "--frame-rate", "40"], "--frame-rate 40.0: must be 0.1 to 30"),
])
def test_out_of_range_options_are_one_line_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_server_settings_come_from_the_environment_by_the_same_names(tmp_path):
    env = {"MULTINET_PORT": "8123", "MULTINET_SAMPLE_INTERVAL": "2.5",
           "MULTINET_OPEN_REGISTRATION": "off", "MULTINET_LIVE_SECONDS": "",
           "MULTINET_POLICY": str(tmp_path / "p.yaml")}
    s = Settings.from_env(env)
    assert (s.port, s.sample_interval, s.open_registration) == (8123, 2.5, False)
    assert s.live_seconds == Settings().live_seconds and s.policy == tmp_path / "p.yaml"
    assert Settings.from_env(env, port=9000).port == 9000  # the command line wins
    # the message names where the bad value came from
    with pytest.raises(MultiNetError, match="MULTINET_ANALYSIS_WORKERS 0: must be 1 to 64"):
        Settings.from_env({"MULTINET_ANALYSIS_WORKERS": "0"})
    with pytest.raises(MultiNetError, match="--analysis-workers 0: must be 1 to 64"):
        Settings.from_env({}, analysis_workers=0)
    with pytest.raises(MultiNetError,
                       match="MULTINET_ANALYSIS 'maybe': choose one of auto, browser, server, off"):
        Settings.from_env({"MULTINET_ANALYSIS": "maybe"})


def test_the_pages_get_labels_colours_and_names_from_the_server(tmp_path):
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'm.db'}",
                              instructor_token="t" * 20), analyzer_factory=None)
    with TestClient(app) as client:
        r = client.get("/static/emotions.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    consts = {line.split(" = ")[0].removeprefix("const "): line.split("Object.freeze(")[1][:-2]
              for line in r.text.splitlines() if line.startswith("const ")}
    assert json.loads(consts["EMOTIONS"]) == list(EMOTIONS)
    assert json.loads(consts["COLORS"]) == COLORS and json.loads(consts["ADJECTIVES"]) == ADJECTIVES
    static = Path(create_app.__code__.co_filename).parent / "static"
    for page in (f for f in static.iterdir() if f.is_file()):  # no page restates them
        # (static/vendor/: the in-browser analysis runtime, not our pages)
        text = page.read_text()
        for color in COLORS.values():
            assert color not in text.lower(), f"{page.name} repeats the colour {color}"
        assert '"angry", "fear"' not in text and "afraid" not in text, page.name


def test_the_start_up_message_states_the_limits_and_the_law(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MULTINET_INSTRUCTOR_TOKEN", "t" * 20)
    assert main(["serve", "--check", "--no-analysis", "--database",
                 f"sqlite:///{tmp_path / 'm.db'}"]) == 0
    out = capsys.readouterr().out
    assert "facial expressions, not feelings" in out
    assert "AI Act (Art. 5(1)(f)) prohibits emotion recognition" in out
    metrics = json.loads((Path(options.__file__).parent / "assets" / "model_metrics.json")
                         .read_text())
    assert f"right on {metrics['figures']['test-ferplus']['accuracy']:.1%}" in out
