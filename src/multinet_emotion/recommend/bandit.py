"""Personalisation: Thompson sampling over what helped this learner and others.

For each (rule, content kind) a Beta posterior starts from the policy's default weight,
borrows (capped) evidence from other learners and is updated by this learner's outcomes:
the change in affect after an accepted suggestion, thumbs up/down and dismissals.

The evidence is computed here from the responses the store keeps
(:meth:`multinet_emotion.app.store.Store.responses`): the store only persists and queries rows,
this module decides what they are worth.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from .policy import PersonalisationConfig, Rule

#: (successes, failures) per (rule, kind): weighted sums of rewards in [0, 1].
Stats = Mapping[tuple[str, str], tuple[float, float]]


@dataclass(frozen=True)
class KindScore:
    kind: str
    alpha: float
    beta: float
    sample: float
    you: float      # observations from this learner
    others: float   # observations from other learners (before capping)

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)


class Personaliser:
    """Thompson sampling over Beta posteriors, one per (rule, kind), per learner."""

    def __init__(self, config: PersonalisationConfig, rng: random.Random | None = None):
        self.config = config
        self.rng = rng or random.Random()

    def posterior(self, rule: Rule, kind: str, you: Stats, others: Stats) -> tuple[float, float]:
        c = self.config
        w = rule.kinds.get(kind, 0.5)
        alpha = 1.0 + c.prior_strength * w
        beta = 1.0 + c.prior_strength * (1.0 - w)
        s, f = others.get((rule.name, kind), (0.0, 0.0))
        if s + f > 0:
            n_eff = min(c.population_weight * (s + f), c.population_cap)
            alpha += n_eff * s / (s + f)
            beta += n_eff * f / (s + f)
        s, f = you.get((rule.name, kind), (0.0, 0.0))
        return alpha + s, beta + f

    def choose(self, rule: Rule, kinds: Sequence[str], you: Stats,
               others: Stats) -> tuple[str, list[KindScore]]:
        if not kinds:
            raise ValueError("no eligible kinds")
        scores = []
        for k in kinds:
            a, b = self.posterior(rule, k, you, others)
            scores.append(KindScore(k, a, b, self.rng.betavariate(a, b),
                                    sum(you.get((rule.name, k), (0, 0))),
                                    sum(others.get((rule.name, k), (0, 0)))))
        best = max(scores, key=lambda s: s.sample)
        return best.kind, scores


def observations(p: PersonalisationConfig, *, reward: float | None = None,
                 feedback: int | None = None, dismissed: bool = False) -> tuple[float, float]:
    """(successes, failures) contributed by one recommendation's outcome, feedback, dismissal."""
    s = f = 0.0
    if reward is not None:
        s += reward
        f += 1.0 - reward
    if feedback is not None:
        r = 1.0 if feedback > 0 else 0.0
        s += p.feedback_weight * r
        f += p.feedback_weight * (1.0 - r)
    if dismissed:
        f += p.dismiss_weight
    return s, f



class Response(Protocol):
    """A learner's response to one recommendation (a row of ``Store.responses``)."""

    @property
    def learner_id(self) -> str: ...
    @property
    def rule(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def status(self) -> str: ...           # accepted | dismissed (others count for nothing)
    @property
    def reward(self) -> float | None: ...  # the measured outcome; None: not measured
    @property
    def feedback(self) -> int | None: ...  # +1 thumbs up, -1 thumbs down, None: none


def bandit_stats(responses: Iterable[Response], learner_id: str,
                 p: PersonalisationConfig) -> tuple[dict[tuple[str, str], tuple[float, float]],
                                                    dict[tuple[str, str], tuple[float, float]]]:
    """(successes, failures) per (rule, kind) for this learner and for everyone else."""
    you: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    others: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in responses:
        if r.status not in ("accepted", "dismissed"):
            continue
        succ, fail = observations(p, reward=r.reward, feedback=r.feedback,
                                  dismissed=r.status == "dismissed")
        acc = (you if r.learner_id == learner_id else others)[(r.rule, r.kind)]
        acc[0] += succ
        acc[1] += fail
    return ({k: (v[0], v[1]) for k, v in you.items()},
            {k: (v[0], v[1]) for k, v in others.items()})
