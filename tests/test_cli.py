"""The command line turns user mistakes into one line and exit status 2."""

import subprocess
import sys

import pytest
from synth import toy_faces, write_folder

from multinet_emotion.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "multinet_emotion.cli", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "/no/such/dir"], "no such file or folder"),
    (["evaluate", "--model", "/no/model.onnx", "--data", "/tmp"], "model file not found"),
    (["export", "--model", "/no/best.pt", "--out", "x.txt"], "must end in .onnx"),
])
def test_user_errors_are_one_line(args, message):
    proc = run(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_train_refuses_an_existing_run_without_resume(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MULTINET_CACHE", str(tmp_path / "cache"))
    data = write_folder(tmp_path / "d", *toy_faces(3))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run")]) == 2
    assert "--resume" in capsys.readouterr().err


def test_strict_names_the_bad_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MULTINET_CACHE", str(tmp_path / "cache"))
    data = write_folder(tmp_path / "d", *toy_faces(3))
    (data / "sad" / "broken.png").write_bytes(b"\x89PNG garbage")
    assert main(["train", "--data", str(data), "--strict", "--out", str(tmp_path / "r")]) == 2
    assert "sad/broken.png" in capsys.readouterr().err


def test_a_recipe_states_the_options_and_the_command_line_wins(tmp_path, monkeypatch):
    """train --recipe FILE.toml: the file's options are the defaults (each checked by the
    option's own type), an option given on the command line wins, and the shipped recipes
    (recipes/) name only real options."""
    from pathlib import Path

    from multinet_emotion import cli

    seen = {}
    monkeypatch.setattr(cli, "_train", lambda args: seen.update(vars(args)) or 0)
    recipe = tmp_path / "r.toml"
    recipe.write_text('labels = "ferplus"\nlr = 0.0005\nwebcam = false\narch = "small-wide"\n'
                      'teacher = "t.onnx"\n')
    assert main(["train", "--data", "d", "--recipe", str(recipe), "--lr", "0.002"]) == 0
    assert seen["labels"] == "ferplus" and seen["lr"] == 0.002 and seen["webcam"] is False
    assert seen["arch"] == "small-wide" and seen["teacher"] == Path("t.onnx")
    for path in sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.toml")):
        seen.clear()
        assert main(["train", "--data", "d", "--recipe", str(path)]) == 0, path
        assert seen["epochs"] > 0


@pytest.mark.parametrize("text, message", [
    ("lr = 0.001\nlearning_rate = 1\n", "unknown option(s) learning_rate"),
    ("lr = \n", "not a TOML file"),
    ('lr = "fast"\n', "invalid float value"),
])
def test_a_bad_recipe_is_one_line(tmp_path, text, message):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    proc = run("train", "--data", "d", "--recipe", str(recipe))
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
