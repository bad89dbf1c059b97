"""Settings of the web service, from the environment (MULTINET_*) and the command line."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from .. import options
from ..errors import MultiNetError
from ..files import keep_private_text, read_private_text
from ..options import restate, setting
from ..runtime.detect import PipelineConfig
from ..runtime.faces import DetectorConfig
from .browser import BROWSER_DETECTORS

#: With max_frame_rate unset, a connection may send this many times the frame rate (the
#: browser's timer is not exact, and a tab in the background sends in bursts)...
FRAME_RATE_HEADROOM = 2.0
#: ... and never fewer than this many frames per second.
MIN_FRAME_RATE_LIMIT = 10.0
#: The file, in the data directory, that keeps a generated instructor token (mode 0600).
TOKEN_FILE = "instructor-token"


def token_file() -> Path:
    """Where a generated instructor token is kept: the data directory (that of the default
    SQLite database), $XDG_DATA_HOME/multinet-emotion/instructor-token."""
    from .store import data_dir
    return data_dir() / TOKEN_FILE


def _default_database_url() -> str:
    from .store import default_database_url  # SQLAlchemy loads when settings are made
    return default_database_url()


@dataclass(frozen=True)
class Settings:
    """Everything `multinet-emotion serve` can be told; defaults work on a fresh machine.

    Each field is stated once: `serve --field-name` and MULTINET_FIELD_NAME come from it."""

    host: str = setting("127.0.0.1", env=True, help="address to listen on")
    port: int = setting(8000, env=True, min=1, max=65535, help="port")
    database_url: str = setting(
        default_factory=_default_database_url, env=True, flag="--database", metavar="URL",
        help="sqlite:///PATH or postgresql://USER@HOST/DB (default: SQLite under "
             "~/.local/share/multinet-emotion/)")
    instructor_token: str = setting(
        "", env=True, cli=False,  # never on a command line, where `ps` shows it
        help="the instructor's token (empty: generated once, printed once and kept in "
             "the data directory, readable by its owner only)")
    policy: Path | None = setting(None, env=True,
                                  help="recommendation policy YAML/JSON (default: the shipped one)")
    catalog: Path | None = setting(None, env=True,
                                   help="content catalog YAML/JSON (default: the shipped one)")
    model: Path | None = setting(
        None, env=True, metavar="hybrid|student|PATH",
        help="emotion model, on the server and in the learner's browser: a shipped one "
             "(hybrid, the accurate; student, the compact) or an exported .onnx (default: "
             "the hybrid on the server, the student in the browser)")
    analysis: str = setting(
        "auto", env=True, choices=("auto", "browser", "server", "off"),
        help="where the camera picture is analysed: browser (in the learner's browser, only "
             "probabilities reach the server; needs scripts/setup_web.sh), server (frames are "
             "sent and analysed in memory), auto (in the browser where it can run the model, "
             "else on the server), off (clients post their own samples)")
    frame_rate: float = setting(2.0, env=True, min=0.1, max=30, unit="per second",
                                help="frames per second the learner page sends")
    frame_width: int = setting(320, env=True, min=64, max=1920, unit="pixels",
                               help="width the learner page scales frames to before sending them")
    max_frame_bytes: int = setting(300_000, env=True, min=1000,
                                   help="larger frames are refused (the connection stays up)")
    max_frame_side: int = setting(1920, env=True, min=64, help="larger images are refused")
    max_frame_rate: float | None = setting(
        None, env=True, min=0, min_open=True,
        help="frames per second one connection may send before frames are skipped (default: "
             f"{FRAME_RATE_HEADROOM:g} x the frame rate, at least {MIN_FRAME_RATE_LIMIT:g})")
    max_body_bytes: int = setting(256_000, env=True, min=1024, help="largest HTTP request body")
    sample_interval: float = setting(1.0, env=True, min=0.1, max=60, unit="seconds",
                                     help="emotion samples are stored at most this often")
    retention_days: float = setting(30.0, env=True, min=0, min_open=True,
                                    help="delete emotion samples older than this many days")
    open_registration: bool = setting(True, env=True,
                                      help="learners may sign up themselves (else: by token)")
    analysis_workers: int = setting(
        16, env=True, min=1, max=64,
        help="frames analysed at once; their faces go through the model together, in "
             "batches (more frames at once, larger batches)")
    workers: int = setting(
        1, env=True, min=1, max=64,
        help="worker processes serving the app (more than 1 needs PostgreSQL, through which "
             "they share the live view of sessions; with SQLite one process owns it)")
    db_connections: int = setting(
        32, env=True, min=6, max=1000,
        help="PostgreSQL connections each worker process opens at most; workers x this must "
             "stay under the server's max_connections (100 by default: 3 workers of 32)")
    # the runtime's own settings (detect.PipelineConfig), with the service's defaults: a
    # learner page sends 2 frames a second, so 10 = a whole-frame scan every 5 s, and 2 =
    # a face that comes into view is found within 1 s
    detect_every: int = restate(PipelineConfig, "detect_every", 10, env=True, max=30)
    detector: str = restate(DetectorConfig, "kind", "blazeface", env=True,
                            choices=BROWSER_DETECTORS, metavar=None,
                            help="face detector, on the server and in the learner's browser: "
                                 "blazeface (MediaPipe's) or haar (OpenCV's cascade)")
    mirror_pass: bool = setting(
        False, env=True,
        help="also run each face's mirror image through the model and average the two, as "
             "the model card measures (0.1 point more accurate on FER2013 PrivateTest, but "
             "twice the model's work: fewer learners per server, slower in the browser)")
    search_every: int = restate(PipelineConfig, "search_every", 2, env=True, max=30)
    live_seconds: float = setting(30.0, env=True, min=1, max=3600, unit="seconds",
                                  help="a learner counts as live this long after a sample")
    public_url: str = setting(
        "", env=True, metavar="URL",
        help="the URL browsers and learning platforms reach this service at "
             "(https://emotion.school.edu), for the LTI URLs (default: the request's own)")
    allowed_origins: str = setting(
        "", env=True, metavar="ORIGINS",
        help="comma-separated origins (https://lms.example.org) whose pages may open the "
             "learner WebSocket (default: only the server's own, as named by the request's "
             "Host)")
    allowed_hosts: str = setting(
        "", env=True, metavar="HOSTS",
        help="comma-separated host names (emotion.school.edu, 192.168.1.20) the service "
             "answers to besides loopback's (localhost, 127.0.0.1, ::1), --public-url's and "
             "--host's; a request with another Host header is refused (421), so that a page "
             "of another site cannot reach it by rebinding its DNS name ('*': any)")
    forwarded_allow_ips: str = setting(
        "", env=True, metavar="ADDRESSES",
        help="comma-separated addresses or networks (10.0.0.5, 10.1.0.0/16) of the reverse "
             "proxies whose X-Forwarded-For and X-Forwarded-Proto are believed: the client "
             "address (for the rate limits) is then the one the proxy names (default: none "
             "is believed, from loopback neither; the address is the connection's own)")
    signup_rate: int = setting(
        10, env=True, min=0, unit="per minute",
        help="sign-ups one client address may make per minute (0 = no limit; the instructor "
             "token is not limited). Behind a reverse proxy, name it in "
             "--forwarded-allow-ips, else every client has the proxy's address")
    session_rate: int = setting(
        30, env=True, min=0, unit="per minute",
        help="sessions one client address may start, and join codes it may try, per minute "
             "(0 = no limit)")
    max_connections_per_address: int = setting(
        100, env=True, min=0, max=100_000,
        help="learner WebSocket connections one client address may hold open in each worker "
             "process (0 = no limit); a class behind one school router shares an address. "
             "Each learner has one connection at a time: a newer one replaces the older")
    lti_login_rate: int = setting(
        60, env=True, min=0, unit="per minute",
        help="LTI logins (/lti/login: a platform's browser starting a launch) one client "
             "address may start per minute (0 = no limit)")
    lrs_url: str = setting(
        "", env=True, metavar="URL",
        help="xAPI endpoint of a Learning Record Store (https://lrs.school.edu/xAPI/): "
             "learning records (docs/xapi-profile.md) are queued and sent there (default: "
             "none, and none are made)")
    lrs_username: str = setting("", env=True, cli=False, repr=False,
                                help="the LRS's basic-auth user (environment only)")
    lrs_password: str = setting("", env=True, cli=False, repr=False,
                                help="the LRS's basic-auth password (environment only; never "
                                     "logged or shown)")
    lrs_batch: int = setting(50, env=True, min=1, max=500,
                             help="statements sent to the LRS in one request")
    lrs_timeout: float = setting(10.0, env=True, min=0.5, max=300, unit="seconds",
                                 help="how long to wait for the LRS to answer")
    lrs_max_backoff: float = setting(300.0, env=True, min=1, max=3600, unit="seconds",
                                     help="the longest wait between tries while the LRS is "
                                          "down or failing (it doubles from 1 s)")

    def __post_init__(self) -> None:
        if self.max_frame_rate is None:  # derived from the frame rate the page is told to use
            object.__setattr__(self, "max_frame_rate",
                               max(MIN_FRAME_RATE_LIMIT, FRAME_RATE_HEADROOM * self.frame_rate))

    def with_token(self) -> Settings:
        """These settings with an instructor token (a new random one when unset)."""
        if self.instructor_token:
            return self
        return replace(self, instructor_token=secrets.token_urlsafe(18))

    def with_saved_token(self, path: Path | None = None) -> tuple[Settings, str]:
        """These settings with an instructor token, and where it came from: "env" (it was
        set: MULTINET_INSTRUCTOR_TOKEN), "file" (kept in ``path`` from an earlier start),
        or "generated" (new, now kept in ``path``, readable by its owner only)."""
        if self.instructor_token:
            return self, "env"
        path = path or token_file()
        try:
            token = _read_token(path)
            how = "file"
            if token is None:
                token, how = _save_token(path, secrets.token_urlsafe(18))
        except OSError as e:
            raise MultiNetError(f"cannot keep the instructor token in {path} ({e.strerror}); "
                                "set MULTINET_INSTRUCTOR_TOKEN instead") from None
        return replace(self, instructor_token=token), how

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Read MULTINET_* variables; keyword overrides (from the CLI) win when not None."""
        env = os.environ if env is None else env
        values = options.from_env(cls, env)
        origins = {name: options.env_of(name) for name in values}
        given = {k: v for k, v in overrides.items() if v is not None}
        origins.update({name: options.flag_of(name, options.specs(cls)[name][1])
                        for name in given})
        values.update(given)
        settings = cls(**values)
        settings.check(origins)
        return settings

    def check(self, origins: Mapping[str, str] | None = None) -> None:
        options.check(self, origins)
        assert self.max_frame_rate is not None  # set by __post_init__
        if self.max_frame_rate < self.frame_rate:
            raise MultiNetError(f"max frame rate {self.max_frame_rate:g} is below the frame rate "
                                f"{self.frame_rate:g}, so learners' frames would be refused; "
                                "raise MULTINET_MAX_FRAME_RATE or leave it unset (it follows "
                                "the frame rate)")
        if self.workers > 1 and self.database_url.lower().startswith("sqlite"):
            where = (origins or {}).get("workers", "--workers")
            raise MultiNetError(f"{where} {self.workers}: several worker processes need "
                                "PostgreSQL (--database postgresql://USER@HOST/DB), where they "
                                "share the live view of sessions; with SQLite one process owns "
                                "it, so run --workers 1")
        if self.instructor_token and len(self.instructor_token) < 8:
            raise MultiNetError("MULTINET_INSTRUCTOR_TOKEN must be at least 8 characters")
        for origin in self.allowed_origins.split(","):
            origin = origin.strip().rstrip("/")
            scheme, _, rest = origin.partition("://")
            if origin and (scheme.lower() not in ("http", "https") or not rest or "/" in rest):
                where = (origins or {}).get("allowed_origins", "--allowed-origins")
                raise MultiNetError(f"{where}: {origin!r} is not an origin; write it as "
                                    "https://host or http://host:port, comma-separated")
        _check_lrs_url(self.lrs_url, (origins or {}).get("lrs_url", "--lrs-url"))
        _check_proxies(self.forwarded_allow_ips,
                       (origins or {}).get("forwarded_allow_ips", "--forwarded-allow-ips"))

    def proxy_options(self) -> dict[str, object]:
        """uvicorn's options for forwarded headers: believed only from the named proxies
        (uvicorn's own default believes loopback, and FORWARDED_ALLOW_IPS)."""
        ips = [x.strip() for x in self.forwarded_allow_ips.split(",") if x.strip()]
        if not ips:
            return {"proxy_headers": False, "forwarded_allow_ips": ""}
        return {"proxy_headers": True, "forwarded_allow_ips": ips}


def _check_proxies(text: str, where: str) -> None:
    """Comma-separated IP addresses or networks ("*": any, for a port only a proxy reaches)."""
    import ipaddress
    for item in (x.strip() for x in text.split(",")):
        if not item or item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise MultiNetError(f"{where}: {item!r} is not an IP address or network; write "
                                "the proxies as 10.0.0.5 or 10.1.0.0/16, comma-separated"
                                ) from None


def _check_lrs_url(url: str, where: str) -> None:
    """An http(s) URL without credentials in it (they come from MULTINET_LRS_USERNAME and
    MULTINET_LRS_PASSWORD, so that no URL shown or logged carries them)."""
    if not url:
        return
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MultiNetError(f"{where}: the LRS endpoint must be an http(s) URL such as "
                            "https://lrs.school.edu/xAPI/")
    if parts.username is not None or parts.password is not None:
        raise MultiNetError(f"{where}: put no credentials in the LRS URL; set "
                            "MULTINET_LRS_USERNAME and MULTINET_LRS_PASSWORD instead")
    if parts.query or parts.fragment:
        raise MultiNetError(f"{where}: the LRS endpoint takes no query or fragment")


def _read_token(path: Path) -> str | None:
    """The token kept in ``path`` (None when there is no such file); the file is made
    readable by its owner only if it was not."""
    text = read_private_text(path)
    if text is None:
        return None
    token = text.strip()
    if len(token) < 8 or any(c.isspace() for c in token):
        raise MultiNetError(f"{path} does not hold an instructor token (one line, at least 8 "
                            "characters); delete it to have a new one generated")
    return token


def _save_token(path: Path, token: str) -> tuple[str, str]:
    """Keep a new token in ``path`` (readable by its owner only); when another start kept
    one first, that one wins. Returns the token and "generated" or "file"."""
    kept, made = keep_private_text(path, token + "\n", read=_read_token)
    return (token, "generated") if made else (kept, "file")
