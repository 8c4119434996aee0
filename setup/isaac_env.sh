#!/usr/bin/env bash
# make isaac-env: Isaac Lab 3 (kit-less, Newton physics) in its own Python 3.12 environment, build/isaaclab-venv,
# for the isaaclab physics backend (franka_sim.isaaclab_batch). Isaac Lab 3.0.0 pins Python 3.12, torch 2.11 (a CUDA
# build), warp-lang 1.17, newton 1.6.1 and mujoco 3.12, so it cannot share .venv. ~9 GB on disk; ~5 minutes from PyPI
# on a fast link. Idempotent: a second run with the same lock file only checks the imports.
#   PYTHON312=/path/to/python3.12 make isaac-env     # default: python3.12 on PATH, else pyenv's newest 3.12
#   ISAACLAB_VENV=/data/isaaclab-venv make isaac-env  # elsewhere (then RESIDUAL_ISAACLAB_PYTHON=/data/isaaclab-venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ISAACLAB_VENV:-build/isaaclab-venv}  # another place: point RESIDUAL_ISAACLAB_PYTHON at its bin/python
LOCK=setup/isaaclab-env.lock.txt
STAMP="$VENV/.lock-$(grep -v "^#" "$LOCK" | sha256sum | cut -c1-16)"  # the pins, not the comments

is_python312() {  # runs it: a pyenv shim can exist on PATH and still refuse to run
  "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 12) else 1)' >/dev/null 2>&1
}

find_python312() {
  if [[ -n "${PYTHON312:-}" ]]; then
    is_python312 "$PYTHON312" || { echo "[isaac-env] PYTHON312=$PYTHON312 is not a working Python 3.12" >&2; exit 1; }
    echo "$PYTHON312"; return
  fi
  local c
  for c in "$(command -v python3.12 || true)" \
           $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12.*/bin/python3.12 2>/dev/null | sort -rV); do
    if [[ -n "$c" ]] && is_python312 "$c"; then echo "$c"; return; fi
  done
  echo "[isaac-env] Isaac Lab 3 needs Python 3.12: install it (e.g. pyenv install 3.12) or set PYTHON312" >&2
  exit 1
}

if [[ ! -f "$STAMP" ]]; then
  PY312=$(find_python312)
  echo "[isaac-env] creating $VENV with $PY312 ($("$PY312" --version))"
  [[ -x "$VENV/bin/python" ]] || "$PY312" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  # Step 1: Isaac Lab 3 with every version from the lock, except the two the importer changes in step 2.
  grep -v -E '^(#|usd-exchange==|newton-usd-schemas==|isaacsim-|mujoco-usd-converter==|urdf-usd-converter==|usd-optimize==|usd-validation-nvidia==|numpy-stl==|python-utils==|tinyobjloader==)' \
    "$LOCK" > "$VENV/constraints-step1.txt"
  echo "[isaac-env] step 1/2: isaaclab==3.0.0 (torch, warp-lang, newton, mujoco-warp: several GB)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check isaaclab==3.0.0 -c "$VENV/constraints-step1.txt"
  echo "[isaac-env] step 2/2: isaacsim-asset-isolated==6.2.0.0 (the MJCF importer Isaac Lab's MjcfConverter uses)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check isaacsim-asset-isolated==6.2.0.0 \
    "$(grep '^usd-exchange==' "$LOCK")" "$(grep '^newton-usd-schemas==' "$LOCK")" -c "$LOCK" \
    2>&1 | grep -v "dependency resolver\|isaaclab 3.0.0 requires" || true
  rm -f "$VENV"/.lock-*
  touch "$STAMP"
fi
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import isaaclab.sim.converters  # noqa: F401  (Isaac Lab's MJCF converter)
import newton.solvers  # noqa: F401
from isaacsim.asset.importer.mjcf import MJCFImporter  # noqa: F401
print("[isaac-env] ok:", ", ".join(f"{p} {md.version(p)}" for p in
      ("isaaclab", "newton", "mujoco-warp", "warp-lang", "mujoco-usd-converter", "torch")))
PY
