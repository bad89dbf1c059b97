"""MultiNetEmotion: real-time facial emotion recognition for e-learning."""

from .emotions import EMOTIONS
from .errors import MultiNetError

__all__ = ["EMOTIONS", "MultiNetError"]
__version__ = "0.1.0"
