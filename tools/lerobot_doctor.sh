#!/usr/bin/env bash
# Dev-only format check of a LeRobot dataset folder with lerobot-doctor (PyPI), kept out of .venv.
# Usage: tools/lerobot_doctor.sh DATASET_DIR [lerobot-doctor check options, e.g. -v, --json, --ci]
# Creates build/lerobot-doctor-venv once (python3 -m venv) and installs lerobot-doctor==0.2.0 there.
set -euo pipefail

DOCTOR_VERSION=0.2.0
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/build/lerobot-doctor-venv"

if [[ $# -lt 1 ]]; then
    echo "usage: $0 DATASET_DIR [lerobot-doctor options]" >&2
    exit 2
fi
DATASET="$1"
shift
if [[ ! -d "$DATASET" ]]; then
    echo "error: dataset folder '$DATASET' does not exist" >&2
    exit 2
fi

if [[ ! -x "$VENV/bin/lerobot-doctor" ]] ||
    [[ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("lerobot-doctor"))' 2>/dev/null)" \
        != "$DOCTOR_VERSION" ]]; then
    echo "creating $VENV with lerobot-doctor==$DOCTOR_VERSION" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "lerobot-doctor==$DOCTOR_VERSION"
fi

exec "$VENV/bin/lerobot-doctor" check "$DATASET" "$@"
