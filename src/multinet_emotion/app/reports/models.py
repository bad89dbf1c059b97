"""The typed answers of the read-only report routes (``response_model`` of each): a
learner's summary, a class's overview and timeline, the service's health. Extra fields are
refused here, so an answer never carries more than its schema says."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..schemas import EmotionName, SessionFields, TimelinePoint


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HealthOut(_Out):
    status: str = Field(description="ok")
    analysis: bool = Field(description="frames are analysed on the server")
    database: str = Field(description="sqlite or postgresql")


class SummaryOut(_Out):
    learner_id: str
    name: str
    sessions: int
    samples: int = Field(description="stored seconds")
    face_share: float | None = Field(description="share of stored seconds with a face")
    emotion_shares: dict[EmotionName, float] = Field(
        description="share of the seconds with a face and a label, per label shown")
    recommendations: dict[str, int] = Field(description="suggestions per status")
    helped: int = Field(description="accepted suggestions measured as helpful")


class Mix(_Out):
    """What a stretch of stored seconds showed (``emotions.label_mix``)."""

    shares: dict[EmotionName, float]
    face_share: float
    samples: int


class LearnerMix(_Out):
    session: Mix
    recent: Mix
    recent_minutes: int


class Attention(_Out):
    reason: str
    evidence: dict[str, Any]


class CardRecommendation(_Out):
    title: str
    kind: str
    reason: str


class OverviewLearner(_Out):
    learner_id: str
    name: str
    session_id: str
    started_at: float
    ended_at: float | None
    live: bool
    current: TimelinePoint | None = Field(description="the label shown now (none once the "
                                                      "session has ended)")
    attention: Attention | None
    negative_share: float | None = Field(description="share of the last minutes' labelled "
                                                     "seconds in the attention rule's states")
    recommendation: CardRecommendation | None
    mix: LearnerMix


class AttentionItem(_Out):
    learner_id: str
    name: str
    reason: str


class OverviewOut(_Out):
    class_id: str
    now: float
    learners: list[OverviewLearner]
    attention: list[AttentionItem]
    outcomes: dict[str, dict[str, Any]] = Field(description="per content kind: offered, "
                                                            "accepted, helped, ...")


class ClassPoint(_Out):
    t: float = Field(description="the bucket's middle")
    learners: int
    face_share: float
    shares: dict[EmotionName, float] | None = Field(description="labels shown")
    probs: dict[EmotionName, float] | None = Field(description="mean probabilities")


class ClassTimelineOut(_Out):
    class_id: str
    since: float
    until: float
    bucket: float
    points: list[ClassPoint]


class RuleOut(_Out):
    name: str
    states: list[EmotionName]
    min_duration: float
    kinds: list[str]


class PolicyOut(_Out):
    cooldown: float
    rules: list[RuleOut]


class ConfigOut(_Out):
    """What the pages need to know of the service (no secrets)."""

    emotions: list[EmotionName]
    analysis: bool = Field(description="frames are analysed on the server")
    analysis_note: str
    frame_rate: float
    frame_width: int
    max_frame_bytes: int
    open_registration: bool
    retention_days: float
    policy: PolicyOut


class ExportLearner(_Out):
    id: str
    name: str
    created_at: float
    consent_at: float | None
    consent_version: str | None


class ExportSession(SessionFields):
    model_config = ConfigDict(extra="forbid")
    samples: list[TimelinePoint]


class ExportOut(_Out):
    """Everything stored about a learner (``GET /api/me/export``)."""

    format: str
    version: int
    exported_at: float
    learner: ExportLearner
    sessions: list[ExportSession]
    recommendations: list[dict[str, Any]]
    outcomes: list[dict[str, Any]]
    feedback: list[dict[str, Any]]


class AnalysisOut(_Out):
    """Where the learner's picture is analysed (``GET /api/analysis``)."""

    mode: str | None = Field(description="browser, server, auto or off")
    server: bool = Field(description="the server analyses frames")
    browser: dict[str, Any] | None = Field(description="what the learner page needs to "
                                                       "analyse in the browser, or null")
    browser_note: str
