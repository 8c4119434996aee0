#!/usr/bin/env bash
# The main job (`make demo`): the ROS 2 sim graph, base alone vs base + residual, on seeded episodes.
# Usage: setup/demo.sh [TASK] [EPISODES] [POSES]   (POSES: gt or camera; all options: .venv/bin/residual-demo --help)
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/residual-demo --task "${1:-cube_lift}" --episodes "${2:-10}" --pose-source "${3:-gt}"
