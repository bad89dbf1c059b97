"""The ``platform`` sub-command: the learning platforms (LMSs) registered to launch the tool
with LTI 1.3, and a try-out one on this machine."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import MultiNetError


def platform_parser(sub) -> None:
    p = sub.add_parser(
        "platform", help="register the learning platforms (LMSs) that launch the tool (LTI 1.3)",
        description="Platforms (Moodle, Canvas, Open edX, Brightspace, Sakai...) launch the "
        "tool with LTI 1.3. Register each one with the values it shows when the tool is "
        "added; `add` prints the URLs to give it back. Kept in the database "
        "(MULTINET_DATABASE_URL or --database), so every server process sees them.")
    from . import options
    from .app.lti.spec import PlatformSpec
    from .app.settings import Settings
    actions = p.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="register a platform and print the tool's URLs")
    options.add_options(add, PlatformSpec)  # each option from its one statement in lti/spec.py
    lst = actions.add_parser("list", help="the registered platforms")
    lst.add_argument("--json", action="store_true", help="print JSON")
    rm = actions.add_parser("remove", help="remove a platform's registration")
    rm.add_argument("--issuer", required=True, metavar="URL", help="the platform's issuer")
    rm.add_argument("--client-id", default=None, metavar="ID",
                    help="only this client id (default: every one of the issuer)")
    tr = actions.add_parser(
        "try", help="a try-out platform on this machine that launches the running tool",
        description="Start a stand-in learning platform on loopback, register it, and print "
        "its page: its links launch the tool (started with `multinet-emotion serve` on the "
        "same database) as a learner or as the instructor, with LTI 1.3, in a course page's "
        "frame. Ctrl-C stops it and removes its registration.")
    tr.add_argument("--tool-url", default=None, metavar="URL",
                    help="where the running tool is reached (default: --public-url, else "
                         "http://HOST:PORT of serve's settings)")
    tr.add_argument("--try-port", type=int, default=0, metavar="PORT",
                    help="the platform's port (default: a free one)")
    for q in (add, lst, rm, tr):
        options.add_options(q, Settings, only=("database_url", "public_url") +
                            (("host", "port") if q in (add, tr) else ()),
                            defaults_from_class=False)
    p.set_defaults(func=_platform)


def _platform(args: argparse.Namespace) -> int:
    from . import options
    from .app.lti.keys import key_file, load_or_create
    from .app.lti.platforms import Platforms
    from .app.lti.spec import PlatformSpec
    from .app.lti.store import LtiRecords
    from .app.settings import Settings
    from .app.store import Store
    settings = Settings.from_env(**options.values(Settings, args))
    store = Store(settings.database_url)
    try:
        store.migrate()
        platforms = Platforms(LtiRecords(store))
        if args.action == "add":
            row = platforms.add(PlatformSpec(**options.values(PlatformSpec, args)))
            key, created = load_or_create()
            base = settings.public_url.rstrip("/") or f"http://{settings.host}:{settings.port}"
            print(f"registered {row.issuer} (client id {row.client_id}; deployments "
                  f"{', '.join(row.deployment_ids)}); frames allowed from "
                  f"{' '.join(row.frame_origins)}\n"
                  "Give the platform these (the names vary by platform):\n"
                  f"  login initiation URL (OIDC login):   {base}/lti/login\n"
                  f"  redirect URI / target link URI:      {base}/lti/launch\n"
                  f"  public keyset URL (JWKS):            {base}/lti/jwks\n"
                  f"  deep linking (content selection) URL: {base}/lti/launch\n"
                  "  its iframe must allow the camera:    allow=\"camera\" (else choose "
                  "\"open in a new window\")\n"
                  f"tool key: {key_file()} ({'generated now' if created else 'kept'}; "
                  f"kid {key.kid})")
            if not settings.public_url:
                print(f"note: MULTINET_PUBLIC_URL (or --public-url) is not set; the URLs above "
                      f"use {base}, where `serve` listens with these settings (--host, "
                      "--port). Give the address the platform reaches: --public-url "
                      "https://...", file=sys.stderr)
        elif args.action == "list":
            rows = platforms.list()
            if args.json:
                print(json.dumps([r.to_dict() for r in rows], indent=2))
            elif not rows:
                print("no platform is registered (multinet-emotion platform add --help)")
            for r in rows if not args.json else []:
                print(f"{r.issuer}  client id {r.client_id}\n"
                      f"  deployments: {', '.join(r.deployment_ids)}\n"
                      f"  login: {r.auth_login_url}\n  token: {r.auth_token_url}\n"
                      f"  keys:  {r.key_set_url}\n  frames: {' '.join(r.frame_origins)}")
        elif args.action == "try":
            return _try_platform(args, settings, platforms)
        else:
            n = platforms.remove(args.issuer, args.client_id)
            print(f"removed {n} registration{'s' if n != 1 else ''} of {args.issuer.strip()}")
    finally:
        store.close()
    return 0


def _try_platform(args: argparse.Namespace, settings, platforms) -> int:  # noqa: ANN001
    """``platform try``: the try-out platform, registered while it runs."""
    import signal
    import time

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C and a termination stop it (a job started in the background has SIGINT ignored)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    from .app.lti.spec import PlatformSpec
    from .app.lti.trial import Simulator
    tool = (args.tool_url or settings.public_url or
            f"http://{settings.host}:{settings.port}").rstrip("/")
    try:
        sim = Simulator(tool_url=tool, client_id="try-out", deployment_id="try-out",
                        port=args.try_port)
    except OSError as e:
        raise MultiNetError(f"--try-port {args.try_port}: cannot listen there "
                            f"({e.strerror})") from None
    reg = sim.registration()
    platforms.add(PlatformSpec(issuer=reg["issuer"], client_id=reg["client_id"],
                               deployment_ids=reg["deployment_ids"],
                               auth_login_url=reg["auth_login_url"],
                               auth_token_url=reg["auth_token_url"],
                               key_set_url=reg["key_set_url"]))
    print(f"a try-out learning platform runs at {sim.issuer}/ (registered with the tool's "
          f"database)\n  open it in a browser: its links launch the tool at {tool} as a "
          "learner or as the instructor\n  the tool must be running: multinet-emotion serve "
          "(same database)\nCtrl-C stops it and removes its registration", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sim.close()
        platforms.remove(reg["issuer"], reg["client_id"])
        print(f"stopped; removed the registration of {reg['issuer']}")
    return 0
