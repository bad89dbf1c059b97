"""The project's xAPI profile: the verbs, activity types and extensions its statements use,
stated once (docs/xapi-profile.md explains each one; a test checks the two agree).

Standard ADL verbs where one fits (initialized, terminated, launched), the xAPI registry's
``rated`` for thumbs, and the project's own under :data:`PROFILE` for what no standard verb
says (a suggestion shown, dismissed, whether it helped, per-minute emotion shares).
"""

from __future__ import annotations

from typing import NamedTuple

#: The project's profile IRI; its own verbs, activity types and extensions live under it.
PROFILE = "https://multinet-emotion.org/xapi"
#: The platform named in every statement's context.
PLATFORM = "MultiNetEmotion"
#: The xAPI version the statements follow and the sender announces.
XAPI_VERSION = "1.0.3"


class Verb(NamedTuple):
    id: str
    display: str  # en-US

    def as_dict(self) -> dict:
        return {"id": self.id, "display": {"en-US": self.display}}


ADL = "http://adlnet.gov/expapi/verbs"
VERBS: dict[str, Verb] = {
    "session_started": Verb(f"{ADL}/initialized", "initialized"),
    "session_ended": Verb(f"{ADL}/terminated", "terminated"),
    "suggestion_shown": Verb(f"{PROFILE}/verbs/was-shown", "was shown"),
    "suggestion_opened": Verb(f"{ADL}/launched", "launched"),
    "suggestion_dismissed": Verb(f"{PROFILE}/verbs/dismissed", "dismissed"),
    "suggestion_rated": Verb("http://id.tincanapi.com/verb/rated", "rated"),
    "suggestion_outcome": Verb(f"{PROFILE}/verbs/was-helped-by", "was helped by"),
    "emotion_summary": Verb(f"{PROFILE}/verbs/showed-emotions", "showed emotions during"),
}

#: Activity types.
SESSION = f"{PROFILE}/activity-types/session"        # one emotion-aware study session
CLASS = f"{PROFILE}/activity-types/class"            # the class it belongs to (grouping)
CONTENT = f"{PROFILE}/activity-types/content-item"  # a catalog item that was suggested
ACTIVITY_TYPES = (SESSION, CLASS, CONTENT)


def ext(name: str) -> str:
    return f"{PROFILE}/extensions/{name}"


#: Extensions (context: where the statement happened; result: what it measured).
EXT_SUGGESTION = ext("suggestion-id")      # context: the suggestion's id (links its statements)
EXT_KIND = ext("suggestion-kind")          # context: kind of suggestion (break, exercise, ...)
EXT_RULE = ext("suggestion-rule")          # context: the rule that made it (with consent only)
EXT_SOURCE = ext("session-source")         # context: camera | client (who classified)
EXT_MINUTE = ext("minute")                 # context: {"start": ISO time, "end": ISO time}
EXT_SHARES = ext("emotion-shares")         # result: {emotion: share of face samples}
EXT_FACE_SHARE = ext("face-share")         # result: share of samples with a face in view
EXT_SAMPLES = ext("samples")               # result: samples the summary or outcome is over
EXT_OUTCOME = ext("outcome")               # result: {before, after, delta} (with consent only)
EXTENSIONS = (EXT_SUGGESTION, EXT_KIND, EXT_RULE, EXT_SOURCE, EXT_MINUTE, EXT_SHARES,
              EXT_FACE_SHARE, EXT_SAMPLES, EXT_OUTCOME)
