"""The engine: policy + catalog + personalisation give zero or one explained suggestion."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .bandit import KindScore, Personaliser, Response, Stats, bandit_stats
from .catalog import Catalog, CatalogItem
from .policy import Policy, Rule
from .timeline import Point, Trigger, detect_state, score

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recommendation:
    rule: str
    kind: str
    item: CatalogItem
    reason: str
    evidence: dict[str, Any]
    created: float

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "kind": self.kind, "item": self.item.to_dict(),
                "reason": self.reason, "evidence": self.evidence, "created": self.created}


@dataclass
class LearnerContext:
    """What the engine needs to know about a learner besides the timeline."""

    last_recommended_at: float | None = None       # any rule
    last_by_rule: dict[str, float] = field(default_factory=dict)
    open_recommendation: bool = False
    recent_items: Sequence[str] = ()               # item ids, most recent first
    you: Stats = field(default_factory=dict)       # this learner's (successes, failures)
    others: Stats = field(default_factory=dict)    # other learners' (successes, failures)
    tags: Sequence[str] = ()                        # topic of the session, if known
    level: int | None = None                        # current difficulty 1..5, if known


@dataclass(frozen=True)
class Outcome:
    before: float        # mean share of the rule's `improve` emotions before
    after: float
    delta: float
    reward: float        # in [0, 1]; 0.5 = no change
    samples_before: int
    samples_after: int


class Recommender:
    """Policy + catalog + personalisation: zero or one suggestion for a timeline."""

    def __init__(self, policy: Policy, catalog: Catalog, rng: random.Random | None = None):
        self.policy = policy
        self.catalog = catalog
        self.rng = rng or random.Random()
        self.personaliser = Personaliser(policy.personalisation, self.rng)
        for rule in policy.rules:
            missing = [k for k in rule.kinds if not catalog.by_kind(k)]
            if missing:
                log.warning("policy rule %r: the catalog %s has no items of kind %s; they "
                            "will not be suggested", rule.name, catalog.source,
                            ", ".join(missing))

    def bandit_stats(self, responses: Iterable[Response], learner_id: str) -> tuple[Stats, Stats]:
        """(you, others) evidence for :class:`LearnerContext` from stored responses."""
        return bandit_stats(responses, learner_id, self.policy.personalisation)

    def evaluate(self, timeline: Sequence[Point], now: float) -> Trigger | None:
        """The first rule (in policy order) whose sustained state holds now."""
        for rule in self.policy.rules:
            trig = detect_state(rule, self.policy, timeline, now)
            if trig is not None:
                return trig
        return None

    def attention(self, timeline: Sequence[Point], now: float) -> Trigger | None:
        """Evidence that an instructor may want to look at this learner, if any."""
        if self.policy.attention is None:
            return None
        return detect_state(self.policy.attention, self.policy, timeline, now)

    def in_cooldown(self, ctx: LearnerContext, now: float, rule: Rule | None = None) -> bool:
        if ctx.last_recommended_at is not None \
                and now - ctx.last_recommended_at < self.policy.cooldown:
            return True
        if rule is not None and rule.name in ctx.last_by_rule \
                and now - ctx.last_by_rule[rule.name] < max(rule.cooldown, self.policy.cooldown):
            return True
        return False

    def recommend(self, timeline: Sequence[Point], now: float,
                  ctx: LearnerContext | None = None) -> Recommendation | None:
        ctx = ctx or LearnerContext()
        if ctx.open_recommendation or self.in_cooldown(ctx, now):
            return None
        for rule in self.policy.rules:
            trig = detect_state(rule, self.policy, timeline, now)
            if trig is None or self.in_cooldown(ctx, now, rule):
                continue
            kinds = [k for k in rule.kinds if self.catalog.by_kind(k)]
            if not kinds:
                continue
            kind, scores = self.personaliser.choose(rule, kinds, ctx.you, ctx.others)
            item = self.pick_item(kind, ctx)
            evidence = trig.evidence()
            evidence["personalisation"] = {
                s.kind: {"expected_help": round(s.mean, 3), "your_outcomes": round(s.you, 2),
                         "others_outcomes": round(s.others, 2)} for s in scores}
            evidence["why_this_kind"] = self._why(kind, scores)
            return Recommendation(rule=rule.name, kind=kind, item=item, reason=trig.reason(),
                                  evidence=evidence, created=now)
        return None

    @staticmethod
    def _why(kind: str, scores: Sequence[KindScore]) -> str:
        s = next(x for x in scores if x.kind == kind)
        nice = kind.replace("_", " ")
        if s.you >= 1:
            return (f"{nice} has helped you before (expected help {s.mean:.0%} from "
                    f"{s.you:.0f} of your outcomes)")
        if s.others >= 1:
            return f"{nice} has helped other learners (expected help {s.mean:.0%})"
        return f"{nice} is a default suggestion for this situation"

    def pick_item(self, kind: str, ctx: LearnerContext) -> CatalogItem:
        """The item of ``kind`` least recently shown, closest in topic and difficulty."""
        items = self.catalog.by_kind(kind)
        recent = {item_id: i for i, item_id in enumerate(ctx.recent_items)}
        tags = {t.lower() for t in ctx.tags}
        target = None
        if ctx.level is not None:
            target = max(1, min(5, ctx.level + self.policy.kind_difficulty.get(kind, 0)))

        def key(it: CatalogItem) -> tuple:
            seen = recent.get(it.id)
            return (0 if seen is None else 1, -(seen or 0),
                    -len(tags & set(it.tags)),
                    abs(it.difficulty - target) if target is not None else 0,
                    self.rng.random())
        return min(items, key=key)

    def outcome(self, rule_name: str, timeline: Sequence[Point], recommended_at: float,
                accepted_at: float) -> Outcome | None:
        """The change in affect after an accepted suggestion; None without enough faces."""
        try:
            rule = self.policy.rule(rule_name)
        except KeyError:
            return None
        o = self.policy.outcome
        idx = rule.improve_indices
        before = [score(s, idx) for s in timeline
                  if s.face and recommended_at - o.before <= s.t <= recommended_at]
        after = [score(s, idx) for s in timeline
                 if s.face and accepted_at + o.delay <= s.t <= accepted_at + o.delay + o.window]
        if len(before) < o.min_samples or len(after) < o.min_samples:
            return None
        b, a = sum(before) / len(before), sum(after) / len(after)
        if rule.measure == "level":
            reward = a
        else:
            reward = 0.5 + (a - b) / (2 * o.scale)
        return Outcome(before=b, after=a, delta=a - b, reward=min(1.0, max(0.0, reward)),
                       samples_before=len(before), samples_after=len(after))

    def outcome_due(self, accepted_at: float) -> float:
        o = self.policy.outcome
        return accepted_at + o.delay + o.window
