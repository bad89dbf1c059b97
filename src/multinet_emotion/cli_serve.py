"""The ``serve`` sub-command: the e-learning web app and its API."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import MultiNetError

if TYPE_CHECKING:  # the server loads FastAPI and SQLAlchemy: only when serving
    from .app.settings import Settings as ServerSettings


def serve_parser(sub) -> None:
    p = sub.add_parser(
        "serve", help="run the e-learning web app and API",
        description="Serve the learner page (/learn), the instructor dashboard (/dashboard) and "
        "the API (/docs). Settings also come from MULTINET_* environment variables "
        "(MULTINET_DATABASE_URL, MULTINET_INSTRUCTOR_TOKEN, MULTINET_POLICY, ...); options "
        "given here win.")
    from . import options
    from .app.settings import Settings
    # every setting of the web service, from its one statement in server/settings.py; not
    # given = the MULTINET_* variable, else the default
    options.add_options(p, Settings, defaults_from_class=False)
    p.add_argument("--no-analysis", dest="analysis", action="store_const", const="off",
                   help="the same as --analysis off")
    p.add_argument("--access-log", action="store_true", help="log every HTTP request")
    p.add_argument("--check", action="store_true",
                   help="load settings, policy, catalog, model and database, then exit")
    p.set_defaults(func=_serve)


def _measured(model: Path | None, mirror_pass: bool = True) -> str:
    """The shipped models' measured accuracy, from the figures recorded beside them."""
    from .runtime.classifier import SHIPPED_MODELS, shipped_model_path
    if model is not None and str(model) not in SHIPPED_MODELS:
        return "accuracy: see your model's own evaluation"
    where = {"hybrid": "on the server", "student": "in the browser"}
    parts = []
    for name in [str(model)] if model is not None else ["hybrid", "student"]:
        metrics = "model_metrics.json" if name == "hybrid" else "student_metrics.json"
        try:
            fig = json.loads((shipped_model_path(name).parent / metrics).read_text())
            acc = fig["figures"]["test-ferplus"]["accuracy"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        parts.append(f"the {name}{'' if model is not None else ' ' + where[name]} is right "
                     f"on {acc:.1%}")
    if not parts:
        return "its accuracy is in the model card"
    return (" and ".join(parts) + " of FER2013 PrivateTest faces (FER+ labels; model card"
            + ("" if mirror_pass else "; with the mirror pass, which the web app leaves out: "
               "docs/web-app.md, 'One pass or two'") + ")")


def _serve(args: argparse.Namespace) -> int:
    import socket

    from . import options
    from .app import Settings, create_app
    from .app.settings import token_file
    settings, how = Settings.from_env(**options.values(Settings, args)).with_saved_token()
    app = create_app(settings)
    st = app.state.context
    base = f"http://{'127.0.0.1' if settings.host in ('0.0.0.0', '') else settings.host}:" \
           f"{settings.port}"
    if how == "generated":  # the only time the token is printed
        dashboard = f"{base}/dashboard#token={settings.instructor_token}"
        token_line = (f"{settings.instructor_token}  (generated; kept in {token_file()}, "
                      "readable by you only; set MULTINET_INSTRUCTOR_TOKEN to choose one)")
    elif how == "file":
        dashboard = f"{base}/dashboard  (add #token=TOKEN)"
        token_line = f"kept in {token_file()} (not shown; `cat` it to see it)"
    else:
        dashboard = f"{base}/dashboard  (add #token=TOKEN)"
        token_line = "from MULTINET_INSTRUCTOR_TOKEN (not shown)"
    from .app.browser import analysis_mode
    where = analysis_mode(settings.analysis, st.browser_analysis, st.analyzer_factory)
    analysis = {
        "auto": "in the learner's browser where it can run the model (only probabilities "
                "are sent), else on this server",
        "browser": "in the learner's browser only (no picture is sent)",
        "server": f"on this server (the learner page sends {settings.frame_rate:g} pictures a "
                  "second, analysed in memory, never stored)",
        "off": f"off ({st.analysis_note}; {st.browser_note})"}[where]
    print(f"MultiNetEmotion {'configuration is valid' if args.check else 'web app'}\n"
          f"  learners open:    {base}/learn\n"
          f"  instructor opens: {dashboard}\n"
          f"  instructor token: {token_line}\n"
          f"  API docs:         {base}/docs\n"
          f"  store:            {st.service.store.safe_url}\n"
          f"  emotion analysis: {analysis}\n"
          "  what it reads:    facial expressions, not feelings; "
          f"{_measured(settings.model, settings.mirror_pass)}\n"
          "  the law:          in the EU, the AI Act (Art. 5(1)(f)) prohibits emotion "
          "recognition in\n                    workplaces and education institutions (README, "
          "'Where it may be used')", flush=True)
    if args.check:
        return 0
    with socket.socket() as probe:  # a clear message instead of uvicorn's traceback
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.host, settings.port))
        except OSError as e:
            raise MultiNetError(f"cannot listen on {settings.host}:{settings.port} ({e.strerror});"
                                " pass another --port or stop what uses it") from None
    import uvicorn
    common = {"host": settings.host, "port": settings.port, "access_log": args.access_log,
              "log_level": "info", "ws_max_size": max(4 * settings.max_frame_bytes, 1 << 20),
              # no per-message compression: frames are JPEG (they do not shrink) and replies
              # a few hundred bytes; deflating every message costs CPU on both ends
              # (bench/load.py's 'client ms': 0.71 ms a frame with it, 0.45 without)
              "ws_per_message_deflate": False,
              # X-Forwarded-For believed from the named proxies only (not loopback)
              **settings.proxy_options()}
    if settings.workers == 1:
        uvicorn.run(app, workers=1, **common)
        return 0
    # each worker process builds its own app from the environment: hand the settings on
    # (the instructor token too: the environment of a process is its owner's only)
    _export_settings(settings)
    st.service.store.close()
    uvicorn.run("multinet_emotion.app.app:create_app", factory=True,
                workers=settings.workers, **common)
    return 0


def _export_settings(settings: ServerSettings) -> None:
    """Put every setting in this process's MULTINET_* variables, for worker processes."""
    import os

    from . import options
    for name, (_f, spec, _kind, _optional) in options.specs(type(settings)).items():
        if not spec.env:
            continue
        value = getattr(settings, name)
        var = options.env_of(name)
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = ("1" if value else "0") if isinstance(value, bool) else str(value)
