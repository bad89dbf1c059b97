"""MultiNetEmotion: real-time facial emotion recognition for e-learning."""

from .emotions import EMOTIONS
from .errors import MultiNetError

__all__ = ["EMOTIONS", "MultiNetError", "load_model", "EmotionDetector"]
__version__ = "0.1.0"

# The runtime API, imported on first use so `import multinet_emotion` stays light (no torch).
_LAZY = {"load_model": ".runtime.classifier", "EmotionDetector": ".runtime.detect"}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
