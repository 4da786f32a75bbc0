#!/usr/bin/env bash
# The one test command (README, .ci/run): lint, unit tests, then the Docker images and the
# container tests. Usage: scripts/test.sh [extra pytest args]
#   VIGIL_SKIP_DOCKER_SETUP=1  use an engine that is already running (developer laptops)
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - started ))s] $*"; }

stamp "dev setup"
scripts/dev-setup.sh
stamp "ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

if [ -z "${VIGIL_SKIP_DOCKER_SETUP:-}" ]; then
  stamp "docker engine + base image"
  setup_env=$(scripts/docker-setup.sh)  # fails the script if setup fails (eval "$(...)" would not)
  eval "$setup_env"  # exports VIGIL_DOCKER, VIGIL_COMPOSE, VIGIL_BASE_IMAGE
fi
stamp "browser (headless Chromium for the dashboard test)"
scripts/browser-setup.sh

stamp "build images"
scripts/build-images.sh

stamp "pytest (unit + docker)"
set +e
VIGIL_SKIP_BUILD=1 .venv/bin/python -m pytest "$@"  # images were just built
rc=$?
set -e
stamp "done, pytest exit code $rc"
exit $rc
