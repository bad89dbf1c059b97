"""`multinet-emotion platform add|list|remove`: registrations in the database, checked when
given, and the URLs to paste into the platform."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from multinet_emotion.cli import main

MOODLE = ["--issuer", "https://moodle.school.edu", "--client-id", "Xy12",
          "--deployment-id", "3", "--deployment-id", "4",
          "--auth-login-url", "https://moodle.school.edu/mod/lti/auth.php",
          "--auth-token-url", "https://moodle.school.edu/mod/lti/token.php",
          "--key-set-url", "https://moodle.school.edu/mod/lti/certs.php"]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.setenv("MULTINET_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("MULTINET_PUBLIC_URL", "https://emotion.school.edu")
    return tmp_path


def test_add_prints_what_to_paste_and_makes_the_key(env, capsys) -> None:
    assert main(["platform", "add", *MOODLE]) == 0
    out = capsys.readouterr().out
    for line in ("https://emotion.school.edu/lti/login", "https://emotion.school.edu/lti/launch",
                 "https://emotion.school.edu/lti/jwks", 'allow="camera"'):
        assert line in out
    key = env / "multinet-emotion" / "lti-private-key.pem"
    assert key.stat().st_mode & 0o777 == 0o600 and "generated now" in out

    assert main(["platform", "list", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["issuer"] == "https://moodle.school.edu" and row["client_id"] == "Xy12"
    assert row["deployment_ids"] == ["3", "4"]
    assert row["frame_origins"] == ["https://moodle.school.edu"]


def test_canvas_frame_origins_and_several_clients(env, capsys) -> None:
    canvas = ["--issuer", "https://canvas.instructure.com", "--client-id", "10000000000001",
              "--deployment-id", "7:abc", "--auth-login-url",
              "https://sso.canvaslms.com/api/lti/authorize_redirect", "--auth-token-url",
              "https://sso.canvaslms.com/login/oauth2/token", "--key-set-url",
              "https://sso.canvaslms.com/api/lti/security/jwks",
              "--frame-origin", "https://school.instructure.com"]
    assert main(["platform", "add", *canvas]) == 0
    other = [a if a != "10000000000001" else "10000000000002" for a in canvas]
    assert main(["platform", "add", *other]) == 0
    capsys.readouterr()
    assert main(["platform", "list"]) == 0
    out = capsys.readouterr().out
    assert out.count("https://canvas.instructure.com  client id") == 2
    assert "frames: https://school.instructure.com" in out
    assert main(["platform", "remove", "--issuer", "https://canvas.instructure.com",
                 "--client-id", "10000000000001"]) == 0
    assert "removed 1 registration of" in capsys.readouterr().out
    assert main(["platform", "remove", "--issuer", "https://canvas.instructure.com"]) == 0
    capsys.readouterr()
    assert main(["platform", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize("change, message", [
    (("--issuer", "http://moodle.school.edu"), "must use https"),
    (("--key-set-url", "certs.php"), "is not a URL"),
    (("--client-id", " "), "client id"),
])
def test_bad_registrations_are_refused(env, capsys, change, message) -> None:
    args = list(MOODLE)
    args[args.index(change[0]) + 1] = change[1]
    assert main(["platform", "add", *args]) == 2
    assert message in capsys.readouterr().err
    assert main(["platform", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_no_deployment_duplicates_and_unknown_removal(env, capsys) -> None:
    without = [a for i, a in enumerate(MOODLE)
               if a != "--deployment-id" and MOODLE[i - 1] != "--deployment-id"]
    assert main(["platform", "add", *without]) == 2
    assert "at least one deployment id" in capsys.readouterr().err
    assert main(["platform", "add", *MOODLE]) == 0
    assert main(["platform", "add", *MOODLE]) == 2
    assert "already registered" in capsys.readouterr().err
    assert main(["platform", "remove", "--issuer", "https://nowhere.example.org"]) == 2
    assert "no platform https://nowhere.example.org" in capsys.readouterr().err
    assert main(["platform", "add", *MOODLE[:-2], "--key-set-url", "https://x.org/k",
                 "--frame-origin", "https://moodle.school.edu/course"]) == 2
    assert "is not an origin" in capsys.readouterr().err


def test_platform_try_launches_the_running_tool_as_a_learner_and_an_instructor(tmp_path):
    """`platform try` registers a try-out platform in the tool's database while it runs; its
    page's links launch the tool (served here) through the whole LTI 1.3 exchange; Ctrl-C
    stops it and removes the registration."""
    import html
    import os
    import re
    import signal
    import subprocess
    import sys

    import httpx
    from test_web import running

    from multinet_emotion.app import Settings, create_app

    db = f"sqlite:///{tmp_path / 'try.db'}"
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path), "MULTINET_DATABASE_URL": db}
    app = create_app(Settings(database_url=db, instructor_token="t" * 24),
                     analyzer_factory=None)
    with running(app) as tool:
        proc = subprocess.Popen([sys.executable, "-m", "multinet_emotion.cli", "platform", "try",
                                 "--tool-url", tool], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            first = proc.stdout.readline()
            issuer = re.search(r"runs at (http://[^ ]+)/ ", first).group(1)
            listed = subprocess.run([sys.executable, "-m", "multinet_emotion.cli", "platform",
                                     "list", "--json"], env=env, capture_output=True, text=True)
            assert [r["issuer"] for r in json.loads(listed.stdout)] == [issuer]
            with httpx.Client() as browser:  # one cookie jar, as a browser
                home = browser.get(issuer + "/")
                assert "(learner)" in home.text and "(instructor)" in home.text
                for role, page, grant in (("learner", "/learn", "#lti="),
                                          ("instructor", "/dashboard", "#token=")):
                    course = browser.get(f"{issuer}/launch?role={role}", follow_redirects=True)
                    frame = html.unescape(re.search(r'<iframe id="tool" src="([^"]+)"',
                                                    course.text).group(1))
                    assert 'allow="camera"' in course.text
                    auth = browser.get(frame, follow_redirects=True)  # login -> platform
                    form = dict(re.findall(r'name="(\w+)" value="([^"]*)"', auth.text))
                    action = html.unescape(re.search(r'action="([^"]+)"', auth.text).group(1))
                    done = browser.post(action, data=form, follow_redirects=True)
                    assert done.status_code == 200, done.text[:500]
                    # the learner page with its ticket, the course's dashboard with its token
                    assert done.url.path == page and grant in str(done.url), (role, done.url)
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "removed the registration" in out
    listed = subprocess.run([sys.executable, "-m", "multinet_emotion.cli", "platform", "list",
                             "--json"], env=env, capture_output=True, text=True)
    assert json.loads(listed.stdout) == []


def test_add_without_a_public_url_names_the_address_it_assumed(env, capsys, monkeypatch):
    monkeypatch.delenv("MULTINET_PUBLIC_URL")
    assert main(["platform", "add", *MOODLE, "--port", "9001"]) == 0
    out, err = capsys.readouterr()
    assert "http://127.0.0.1:9001/lti/login" in out  # serve's address with these settings
    assert "http://127.0.0.1:9001" in err and "--public-url" in err


def test_help_texts_state_no_empty_default(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = capsys.readouterr().out
    assert "--public-url" in text and "(default )" not in text
