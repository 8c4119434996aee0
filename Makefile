# The project's two commands. Both do all set-up first (idempotent; a second run skips it in ~1 s).
#   make test   set up, lint (ruff) and run the whole test suite (pytest)
#   make demo   set up and run the main job (see README)
# Options: make demo TASK=stack_cube EPISODES=10 POSES=camera   (POSES: gt (default) or camera)
# Optional: make setup-ray   add Ray (setup/requirements-ray.txt) to .venv for residual-sweep and
#   residual-train --collectors; pins of setup/requirements.txt are constraints, so no pinned package changes
# Optional: make setup-warp  add MuJoCo Warp (setup/requirements-warp.txt) to .venv for --backend warp
#   (same constraints); Warp compiles its kernels on first use (~45 s on 2 cores), cached in ~/.cache/warp
# Optional: make isaac-env   Isaac Lab 3 (Newton physics) in its own Python 3.12 environment, build/isaaclab-venv
#   (~9 GB, setup/isaaclab-env.lock.txt), for --backend isaaclab; .venv is not touched

PY := .venv/bin/python
TASK ?= cube_lift
EPISODES ?= 10
POSES ?= gt

.PHONY: setup setup-ray setup-warp isaac-env test lint demo clean help

help:
	@sed -n '1,10p' Makefile | sed 's/^# \{0,1\}//'

setup:
	@bash setup/bootstrap.sh

setup-ray: setup
	@$(PY) -m pip install -q --disable-pip-version-check -r setup/requirements-ray.txt -c setup/requirements.txt
	@$(PY) -c "import ray, ray.tune; print('[setup-ray] ray', ray.__version__, 'in .venv')"

setup-warp: setup
	@$(PY) -m pip install -q --disable-pip-version-check -r setup/requirements-warp.txt -c setup/requirements.txt
	@$(PY) -c "import mujoco_warp, warp; print('[setup-warp] mujoco_warp', mujoco_warp.__version__, 'warp-lang', warp.__version__, 'in .venv')"

isaac-env:
	@bash setup/isaac_env.sh

lint: setup
	@.venv/bin/ruff check .

test: setup lint
	@$(PY) -m pytest -q

demo: setup
	@bash setup/demo.sh "$(TASK)" "$(EPISODES)" "$(POSES)"

clean:
	rm -rf build .pytest_cache .ruff_cache
