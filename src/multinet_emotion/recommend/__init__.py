"""Recommendations from emotion timelines: policies, a content catalog and personalisation.

The engine is pure: it reads a learner's timeline of smoothed emotion probabilities (with
"no face" samples where nobody was seen) and returns zero or one :class:`Recommendation`
with its reason in plain words and the evidence behind it. Persistence lives in
:mod:`multinet_emotion.app.store`, which keeps rows and answers queries; the evidence for
personalisation is computed here from what it returns (:func:`bandit_stats`). The web
service glues the two together.

* A :class:`Policy` (a YAML/JSON file, ``assets/policy.yaml`` by default) maps *sustained*
  states to content kinds with thresholds, minimum durations and cool-downs. Brief moments
  never trigger anything, and nothing is suggested while no face is seen.
* A :class:`Catalog` (``assets/catalog.yaml`` by default) lists content items by kind.
* :class:`Personaliser` chooses among the kinds a rule allows with Thompson sampling over
  Beta posteriors that start from the policy's default weights, borrow (capped) evidence
  from other learners and are updated by this learner's outcomes: the change in affect after
  an accepted suggestion, explicit thumbs up/down and dismissals.

Invalid policy or catalog files are rejected at load with the file, line and reason.

Modules: :mod:`.policy` and :mod:`.catalog` (the typed files), :mod:`.files` (reading them
with line numbers), :mod:`.timeline` (samples and sustained states), :mod:`.bandit`
(personalisation) and :mod:`.engine` (the :class:`Recommender`).
"""

from .bandit import KindScore, Personaliser, Response, Stats, bandit_stats, observations
from .catalog import Catalog, CatalogItem
from .engine import LearnerContext, Outcome, Recommendation, Recommender
from .files import (
    default_catalog_path,
    default_policy_path,
    load_catalog,
    load_policy,
    parse_catalog,
    parse_policy,
)
from .policy import (
    DEFAULT_FEELINGS,
    AttentionRule,
    OutcomeConfig,
    PersonalisationConfig,
    Policy,
    Rule,
)
from .timeline import Sample, Trigger, describe_duration, detect_state

__all__ = [
    "DEFAULT_FEELINGS", "AttentionRule", "Catalog", "CatalogItem", "KindScore", "LearnerContext",
    "Outcome", "OutcomeConfig", "PersonalisationConfig", "Personaliser", "Policy",
    "Recommendation", "Recommender", "Response", "Rule", "Sample", "Stats", "Trigger",
    "bandit_stats", "default_catalog_path", "default_policy_path", "describe_duration",
    "detect_state", "load_catalog", "load_policy", "observations", "parse_catalog",
    "parse_policy",
]
