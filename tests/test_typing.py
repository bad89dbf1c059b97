"""The package passes mypy (settings in pyproject.toml's [tool.mypy]), so type drift fails CI."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_finds_nothing():
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install -e '.[dev]' installs it)")
    r = subprocess.run([sys.executable, "-m", "mypy", "src/multinet_emotion"], cwd=ROOT,
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_runtime_is_held_to_strict_mypy():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    runtime = [o for o in config.get("overrides", [])
               if "multinet_emotion.runtime.*" in o.get("module", [])]
    assert runtime, "no [[tool.mypy.overrides]] block for multinet_emotion.runtime.*"
    strict = ("disallow_untyped_defs", "disallow_incomplete_defs", "disallow_untyped_calls",
              "disallow_any_generics", "warn_return_any", "strict_equality",
              "disallow_untyped_decorators")
    assert all(runtime[0].get(k) is True for k in strict), runtime[0]
    assert runtime[0].get("implicit_reexport") is False, runtime[0]
