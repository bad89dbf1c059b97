#!/usr/bin/env bash
# Install ralph (a real xAPI Learning Record Store) into its own virtualenv, .venv-ralph,
# for the tests that send statements to it (tests/test_xapi_lrs.py). Ralph pins its own
# FastAPI and pydantic, so it never goes into the project's .venv. Idempotent: a working
# .venv-ralph is kept. Usage: scripts/setup_ralph.sh
set -euo pipefail
cd "$(dirname "$0")/.."
version=${RALPH_VERSION:-5.1.0}
export RALPH_RUNSERVER_BACKEND=fs  # importing ralph.api loads the configured backend
if [ -x .venv-ralph/bin/ralph ] && .venv-ralph/bin/python -c "import ralph.api" 2>/dev/null; then
  exit 0
fi
py=${PYTHON:-python3.11}
command -v "$py" >/dev/null || py=python3
rm -rf .venv-ralph
"$py" -m venv .venv-ralph
export PIP_DISABLE_PIP_VERSION_CHECK=1
# requests: ralph.api imports it (OIDC) but its "lrs" extra does not list it
.venv-ralph/bin/pip install -q "ralph-malph[cli,lrs]==$version" requests 2>&1 | grep -v '^WARNING: Location' || true
.venv-ralph/bin/python -c "import ralph.api" || { echo "ralph setup failed" >&2; exit 1; }
