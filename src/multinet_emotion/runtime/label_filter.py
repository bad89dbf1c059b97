"""The label people are shown: a sticky hidden-Markov forward filter over the six emotions.

One face's expression is a hidden state that mostly stays as it is and now and then changes.
The model's readings are noisy observations of it. :class:`LabelFilter` keeps the
posterior over the six emotions given every reading so far, and shows its most likely
emotion once the evidence is clear:

1. **Predict** over the time ``dt`` since the last reading: the expression stays with
   probability ``stay ** dt`` (``stay`` is the chance per second), else it is any of the
   six alike: ``prior = keep * posterior + (1 - keep) / 6``.
2. **Update** with the reading's probabilities ``p`` (the model's, unsmoothed): the
   posterior is ``prior * p ** (evidence * dt)``, normalised. Successive frames of a face
   are far from independent, so a reading counts for the time it covers, not once per
   frame: ``evidence`` is how much a second of readings weighs. Together with ``stay`` per
   second, a face read at 2 or at 30 frames a second gives the same label.
3. **Decide**: a new face shows nothing ("reading...") until it has been read for
   ``min_evidence`` seconds; then the most likely emotion; after that the label moves to
   another emotion only when that emotion's posterior beats the shown one's by ``margin``.
   A flicker of any class moves the posterior a little and resets nothing.

A face not read for ``gap`` seconds starts afresh. The percentage shown beside the label is
the label's own smoothed probability (``Reading.share``).

The learner page runs the same filter in JavaScript (``static/analysis.js``,
``LabelFilter``), step for step; ``tests/test_browser_analysis.py`` checks that both give
the same posteriors and labels. The defaults were chosen on clips made of FER2013
PublicTest faces (``python bench/temporal.py --tune``) and are reported on PrivateTest
ones (``python bench/temporal.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import options
from ..emotions import EMOTIONS
from ..options import setting

#: The time a face's first reading covers (there is no earlier one to measure it from).
FIRST_DT = 0.1
#: A reading covers at most this long: after a longer pause the next counts as one second.
MAX_DT = 1.0
#: Probabilities below this count as this (one near-zero reading must not veto a class).
FLOOR = 1e-4
_EPS = 1e-9


@dataclass
class FilterConfig:
    """The shown label's filter (:class:`LabelFilter`)."""

    stay: float = setting(0.2, min=0, max=1, min_open=True, max_open=True,
                          flag="--label-stay", unit="per second",
                          help="chance that a face's expression stays the same over one "
                               "second: higher = a steadier shown label that follows a change "
                               "later")
    evidence: float = setting(16.0, min=0, min_open=True, max=100, flag="--label-evidence",
                              unit="per second",
                              help="how much one second of the model's readings weighs in the "
                                   "shown label (the readings' probabilities are raised to this "
                                   "power per second)")
    margin: float = setting(0.6, min=0, max=1, max_open=True, flag="--label-margin",
                            help="another emotion replaces the shown label once its filtered "
                                 "probability exceeds the shown one's by this much")
    min_evidence: float = setting(0.2, min=0, max=10, unit="seconds",
                                  help="a new face shows 'reading...' until it has been read "
                                       "for this long")
    gap: float = setting(2.0, min=0, min_open=True, max=3600, flag="--label-gap",
                         unit="seconds",
                         help="a face not read for longer than this starts afresh (its label "
                              "shows 'reading...' again)")

    def __post_init__(self) -> None:
        options.check(self)


class LabelFilter:
    """The shown label of one face (or one learner), from its readings over time.

    >>> f = LabelFilter(FilterConfig())
    >>> f.update(probs, t)     # -> "happy", or None while it is still reading
    """

    def __init__(self, config: FilterConfig | None = None) -> None:
        self.config = config or FilterConfig()
        options.check(self.config)
        self.posterior: np.ndarray | None = None  # EMOTIONS order
        self.index: int | None = None  # the shown label
        self.evidence = 0.0  # seconds of readings since the face (re)appeared
        self.last_t: float | None = None

    @property
    def label(self) -> str | None:
        """The label shown now; None while reading."""
        return None if self.index is None else EMOTIONS[self.index]

    def reset(self) -> None:
        """Forget the face: the next reading starts afresh."""
        self.posterior = self.index = self.last_t = None
        self.evidence = 0.0

    def update(self, probs: Sequence[float] | np.ndarray, t: float,
               settle: bool = False) -> str | None:
        """Take one reading (probabilities in EMOTIONS order) at time ``t`` (seconds);
        return the label to show. ``settle``: show a label now, without waiting for
        ``min_evidence`` (a still image: this reading is all there is)."""
        c = self.config
        if self.last_t is not None and (t - self.last_t > c.gap or t < self.last_t):
            self.reset()
        dt = FIRST_DT if self.last_t is None else min(t - self.last_t, MAX_DT)
        p = np.maximum(np.asarray(probs, np.float64), FLOOR)
        k = len(EMOTIONS)
        if self.posterior is None:
            prior = np.full(k, 1.0 / k)
        else:
            keep = math.pow(c.stay, dt)
            prior = keep * self.posterior + (1.0 - keep) / k
        post = prior * np.power(p, c.evidence * dt)
        self.posterior = post / post.sum()
        self.evidence += dt
        self.last_t = t
        top = int(np.argmax(self.posterior))
        if self.index is None:
            if settle or self.evidence >= c.min_evidence - _EPS:
                self.index = top
        elif top != self.index and \
                self.posterior[top] - self.posterior[self.index] >= c.margin - _EPS:
            self.index = top
        return self.label

    def state(self) -> list[Any]:
        """What :meth:`restore` needs (JSON-ready)."""
        return [None if self.posterior is None else self.posterior.tolist(), self.index,
                self.evidence, self.last_t]

    def restore(self, state: Sequence[Any]) -> None:
        posterior, self.index, self.evidence, self.last_t = state
        self.posterior = None if posterior is None else np.asarray(posterior, np.float64)
