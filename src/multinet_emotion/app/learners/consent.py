"""What a learner agrees to before anything about them is stored: the consent text.

Stated once, here: the learner page shows it (``GET /api/consent``), and sign-up
(``POST /api/learners``) is refused unless it carries ``consent: true`` with the
``version`` of the text the learner read. The version changes whenever the text does
(also when a setting it names, such as the retention period, changes) and whenever what it
covers does (``covers``: where pictures are analysed, whether a learning record store gets
records, what the instructor sees), so an agreement to an earlier text is never taken for
one to the current text: a learner who agreed to another version starts no session, opens
no WebSocket and sends no sample (:func:`require_current_consent`, 403) until they agree
again (``POST /api/me/consent``).

The text must stay true to what the service shows and gives out: the instructor's class
overview (``reports.class_overview``: each learner's current state, share of negative
states, open suggestion, attention flag), the instructor's learner routes (``summary``:
emotion mix over all sessions, suggestions and whether they helped; ``timeline`` and
``export``: every stored reading, one per ``sample_interval``), and the learner's own
export and deletion.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

from ...emotions import ADJECTIVES, EMOTIONS
from ..service import Conflict, ConsentNeeded, Invalid
from ..settings import Settings

#: Raised by hand when the meaning of the text changes; the version also carries a hash
#: of the text itself.
CONSENT_REVISION = 4
#: What the instructor sees of a learner (the third item of the text); raised by hand when
#: the instructor's views show more or less.
INSTRUCTOR_VIEW_REVISION = 1


#: Where the camera picture is analysed, by ``serve --analysis`` (``off``: nothing is, and
#: the server's text stays true of a client that sends pictures anyway).
WHERE_ANALYSED = {
    "browser": "Each picture is analysed on your device, in this browser: no picture leaves "
               "it, only the six numbers of each reading are sent.",
    "server": "Each picture is sent to the server, analysed in its memory and thrown away at "
              "once.",
    "auto": "Each picture is analysed on your device, in this browser, where it can do so: "
            "then no picture leaves it, only the six numbers of each reading are sent. "
            "Otherwise each picture is sent to the server, analysed in its memory and thrown "
            "away at once; this page says which of the two it does.",
}


def _number(x: float) -> str:
    return f"{x:g}"


def consent_items(settings: Settings) -> list[dict[str, str]]:
    """The consent text: a few short points, each a title and a sentence or two."""
    names = [ADJECTIVES[e] for e in EMOTIONS]
    expressions = ", ".join(names[:-1]) + " or " + names[-1]
    every = "second" if settings.sample_interval == 1 else \
        f"{_number(settings.sample_interval)} seconds"
    per = "per-second" if settings.sample_interval == 1 else \
        f"{_number(settings.sample_interval)}-second"
    return [
        {"title": "What is analysed",
         "text": f"The picture from your camera, about {_number(settings.frame_rate)} times a "
                 f"second, to estimate which facial expression you show ({expressions}). "
                 "It reads expressions, not your inner feelings, and can be wrong."},
        {"title": "No image is stored",
         "text": WHERE_ANALYSED.get(settings.analysis, WHERE_ANALYSED["server"]) + " "
                 f"What is kept: your name, your sessions and class, one reading per {every} "
                 "(six numbers: how likely each expression is), and the suggestions you got "
                 "with your answers. Readings are deleted after "
                 f"{_number(settings.retention_days)} days; the rest stays until you delete "
                 "it."},
        {"title": "What your instructor sees, with your name",
         "text": "While a session runs, your current expression and whether you may need "
                 "attention. Over your sessions, your mix of expressions and your share of "
                 "negative ones, the suggestions you got and whether "
                 f"they helped. Your instructor can also export your {per} timeline of "
                 "readings, and everything stored about you. Nobody sees your camera "
                 "picture."},
        *([{"title": "Learning records",
            "text": "Your school's learning record store receives a record when a session "
                    "starts and ends, and of each suggestion you got, what you did with it and "
                    "whether it helped. Your mix of expressions per minute is added only if "
                    "you turn on sharing on this page; it is off unless you do. Records "
                    "already sent stay in that store when you delete your data here: ask "
                    "your school to remove them there."}]
          if settings.lrs_url else []),
        {"title": "Your choice",
         "text": "You can turn the camera off at any time, learn without it, and download or "
                 "delete everything stored about you at any time on this page. If you do not "
                 "agree, nothing about you is stored."},
    ]


def consent_covers(settings: Settings) -> dict[str, Any]:
    """What the consent covers, besides its words: where pictures are analysed, whether
    learning records go to a record store, and the revision of the instructor's view."""
    return {"analysis": settings.analysis, "learning_records": bool(settings.lrs_url),
            "instructor_view": INSTRUCTOR_VIEW_REVISION}


def consent(settings: Settings) -> dict[str, Any]:
    """The consent text, what it covers and its version (what ``GET /api/consent``
    answers); the version changes with any of them."""
    items = consent_items(settings)
    covers = consent_covers(settings)
    digest = hashlib.sha256(json.dumps([items, covers], sort_keys=True).encode("utf-8")
                            ).hexdigest()[:8]
    return {"version": f"{CONSENT_REVISION}-{digest}", "items": items, "covers": covers,
            "retention_days": settings.retention_days}


@lru_cache(maxsize=8)
def current_version(settings: Settings) -> str:
    """The version of the consent text as it is now (computed once per settings)."""
    return str(consent(settings)["version"])


def require_current_consent(settings: Settings, agreed: str | None) -> None:
    """ConsentNeeded (403) unless ``agreed`` (the version a learner agreed to; None: no
    agreement recorded) is the current version."""
    current = current_version(settings)
    if agreed != current:
        what = f"you agreed to version {agreed}" if agreed else "no agreement is recorded"
        raise ConsentNeeded(f"consent needed: the consent text has changed (now version "
                            f"{current}; {what}): read it again (GET /api/consent) and agree "
                            "(POST /api/me/consent with consent: true and its version); "
                            "nothing was stored")


def check_consent(settings: Settings, given: bool, version: str | None) -> str:
    """The consent version a sign-up agreed to; Invalid (422) without consent, Conflict
    (409) when it agreed to another text than the current one."""
    current = current_version(settings)
    if not given:
        raise Invalid("sign-up needs your consent: read the consent text (GET /api/consent) "
                      "and send consent: true with its version; nothing was stored")
    if not version:
        raise Invalid(f"consent_version is missing: send the version of the consent text you "
                      f"agreed to (now {current}, from GET /api/consent); nothing was stored")
    if version != current:
        raise Conflict(f"the consent text has changed since it was read (version {version}, "
                       f"now {current}): read it again and agree; nothing was stored")
    return current
