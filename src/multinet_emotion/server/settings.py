"""Settings of the web service, from the environment (MULTINET_*) and the command line."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import MultiNetError
from ..store import default_database_url
from ..tracking import MAX_HYSTERESIS, MAX_MIN_DWELL

#: With max_frame_rate unset, a connection may send this many times the frame rate (the
#: browser's timer is not exact, and a tab in the background sends in bursts)...
FRAME_RATE_HEADROOM = 2.0
#: ... and never fewer than this many frames per second.
MIN_FRAME_RATE_LIMIT = 10.0


@dataclass(frozen=True)
class Settings:
    """Everything `multinet-emotion serve` can be told; defaults work on a fresh machine."""

    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str = field(default_factory=default_database_url)
    instructor_token: str = ""          # empty: generated at start and printed
    policy: Path | None = None          # None: the shipped assets/policy.yaml
    catalog: Path | None = None         # None: the shipped assets/catalog.yaml
    model: Path | None = None           # None: the default model (assets/model.onnx)
    analysis: str = "auto"              # auto: server-side analysis when the model loads; off
    frame_rate: float = 2.0             # frames per second the learner page sends
    frame_width: int = 320              # ... downscaled to this width in the browser
    max_frame_bytes: int = 300_000      # larger frames are refused (connection stays up)
    max_frame_side: int = 1920          # larger images are refused
    max_frame_rate: float | None = None  # per connection; faster frames are skipped (burst
    #                                     ok). None: FRAME_RATE_HEADROOM x frame_rate, >= 10
    max_body_bytes: int = 256_000       # largest HTTP request body
    sample_interval: float = 1.0        # samples are stored at most this often (seconds)
    retention_days: float = 30.0        # older emotion samples are deleted
    open_registration: bool = True      # learners may sign up themselves (else: token)
    analysis_workers: int = 2           # frames analysed at once (CPU cores)
    detect_every: int | None = None     # full face scan every Nth frame (None: runtime default)
    min_dwell: float | None = None      # seconds a new emotion holds before the shown label
    #                                     changes (None: runtime default, 1.0; 0 = at once)
    hysteresis: float | None = None     # ... and its margin over the shown one (None: runtime
    #                                     default, 0.1; 0 = any)
    live_seconds: float = 30.0          # a learner counts as live this long after a sample

    def __post_init__(self) -> None:
        if self.max_frame_rate is None:  # derived from the frame rate the page is told to use
            object.__setattr__(self, "max_frame_rate",
                               max(MIN_FRAME_RATE_LIMIT, FRAME_RATE_HEADROOM * self.frame_rate))

    def with_token(self) -> Settings:
        """These settings with an instructor token (a new random one when unset)."""
        if self.instructor_token:
            return self
        return replace(self, instructor_token=secrets.token_urlsafe(18))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Read MULTINET_* variables; keyword overrides (from the CLI) win when not None."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}

        def get(name: str, key: str, conv=str) -> None:  # noqa: ANN001
            raw = env.get(name)
            if raw is None or raw == "":
                return
            try:
                values[key] = conv(raw)
            except ValueError:
                raise MultiNetError(f"environment variable {name}={raw!r} is not a valid "
                                    f"{conv.__name__}") from None

        get("MULTINET_HOST", "host")
        get("MULTINET_PORT", "port", int)
        get("MULTINET_DATABASE_URL", "database_url")
        get("MULTINET_INSTRUCTOR_TOKEN", "instructor_token")
        get("MULTINET_POLICY", "policy", Path)
        get("MULTINET_CATALOG", "catalog", Path)
        get("MULTINET_MODEL", "model", Path)
        get("MULTINET_ANALYSIS", "analysis")
        get("MULTINET_FRAME_RATE", "frame_rate", float)
        get("MULTINET_MAX_FRAME_RATE", "max_frame_rate", float)
        get("MULTINET_MAX_FRAME_BYTES", "max_frame_bytes", int)
        get("MULTINET_RETENTION_DAYS", "retention_days", float)
        get("MULTINET_ANALYSIS_WORKERS", "analysis_workers", int)
        get("MULTINET_DETECT_EVERY", "detect_every", int)
        get("MULTINET_MIN_DWELL", "min_dwell", float)
        get("MULTINET_HYSTERESIS", "hysteresis", float)
        if env.get("MULTINET_OPEN_REGISTRATION"):
            values["open_registration"] = env["MULTINET_OPEN_REGISTRATION"].lower() not in (
                "0", "false", "no", "off")
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        if self.analysis not in ("auto", "off"):
            raise MultiNetError(f"analysis must be 'auto' or 'off', got {self.analysis!r}")
        if not 0.1 <= self.frame_rate <= 30:
            raise MultiNetError(f"frame rate {self.frame_rate} is out of range (0.1 to 30 per "
                                "second)")
        assert self.max_frame_rate is not None  # set by __post_init__
        if self.max_frame_rate < self.frame_rate:
            raise MultiNetError(f"max frame rate {self.max_frame_rate:g} is below the frame rate "
                                f"{self.frame_rate:g}, so learners' frames would be refused; "
                                "raise MULTINET_MAX_FRAME_RATE or leave it unset (it follows "
                                "the frame rate)")
        if not 1 <= self.port <= 65535:
            raise MultiNetError(f"port {self.port} is out of range (1-65535)")
        if self.max_frame_bytes < 1000:
            raise MultiNetError("max frame bytes must be at least 1000")
        if self.detect_every is not None and not 1 <= self.detect_every <= 30:
            raise MultiNetError(f"detect every must be 1 to 30 frames, got {self.detect_every}")
        if self.min_dwell is not None and not 0 <= self.min_dwell <= MAX_MIN_DWELL:
            raise MultiNetError(f"min dwell must be 0 to {MAX_MIN_DWELL:g} seconds, got "
                                f"{self.min_dwell}")
        if self.hysteresis is not None and not 0 <= self.hysteresis < MAX_HYSTERESIS:
            raise MultiNetError(f"hysteresis must be at least 0 and below {MAX_HYSTERESIS:g}, "
                                f"got {self.hysteresis}")
        if self.retention_days <= 0:
            raise MultiNetError("retention days must be positive")
        if self.instructor_token and len(self.instructor_token) < 8:
            raise MultiNetError("MULTINET_INSTRUCTOR_TOKEN must be at least 8 characters")
