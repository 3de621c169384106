#!/usr/bin/env bash
# The replica topology from local processes: redis-server, N replicas, HAProxy in front
# (`biometrics cluster`; --help says how). bash scripts/cluster.sh [--replicas N] [--port P]
set -euo pipefail
exec "${PYTHON:-$(dirname "$0")/../.venv/bin/python}" -m biometrics cluster "$@"
