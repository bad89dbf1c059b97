"""The small HTML pages of the LTI flow: refusals, the Deep Linking confirmation, and the
form that carries a signed response back to the platform. No inline script (the pages'
CSP allows scripts from this server only): the one script is served at ``/lti/submit.js``.
"""

from __future__ import annotations

from html import escape

#: Submits the form marked data-autosubmit (the Deep Linking response) on load.
SUBMIT_JS = """"use strict";
const form = document.querySelector("form[data-autosubmit]");
if (form) form.submit();
"""


def _page(title: str, body: str, script: bool = False) -> str:
    js = '<script src="/lti/submit.js"></script>' if script else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MultiNetEmotion — {escape(title)}</title>
<link rel="stylesheet" href="/static/app.css"></head>
<body><header><h1>MultiNetEmotion</h1></header>
<main><section class="card">{body}</section></main>{js}</body></html>"""


def error_page(title: str, message: str, hint: str, detail: str = "") -> str:
    """A refused launch: what happened, what to do, and the checker's words."""
    more = f'<p class="muted">Details: <code>{escape(detail)}</code></p>' if detail else ""
    return _page(title, f'<h2 id="lti-error">{escape(title)}</h2>'
                        f'<p class="error" role="alert">{escape(message)}</p>'
                        f"<p>{escape(hint)}</p>{more}")


def redirect_page(location: str) -> str:
    url = escape(location, quote=True)
    return _page("continue", f'<meta http-equiv="refresh" content="0;url={url}">'
                             f'<p><a href="{url}">Continue</a></p>')


def deep_link_page(launch_id: str, course: str, title: str) -> str:
    """Asks the instructor to confirm placing the tool in the course."""
    return _page("add to course", f"""<h2>Add MultiNetEmotion to {escape(course)}</h2>
<p>This places a link named <b>{escape(title)}</b> in the course. Learners who open it see
what the camera is used for and choose whether to agree before anything is stored;
you open the same link to see the class dashboard.</p>
<form method="post" action="/lti/deep-link" class="row">
<input type="hidden" name="launch_id" value="{escape(launch_id, quote=True)}">
<button type="submit" id="place" name="place" value="1">Add to the course</button>
<button type="submit" class="secondary" name="place" value="0">Cancel</button>
</form>""")


def deep_link_return(return_url: str, jwt: str, placed: bool) -> str:
    """The signed LtiDeepLinkingResponse, posted back to the platform."""
    what = "Returning to the course" if placed else "Cancelled; returning to the course"
    return _page("returning", f"""<h2>{what}…</h2>
<form method="post" action="{escape(return_url, quote=True)}" data-autosubmit>
<input type="hidden" name="JWT" value="{escape(jwt, quote=True)}">
<button type="submit">Continue</button></form>""", script=True)
