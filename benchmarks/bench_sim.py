"""Benchmark of the MuJoCo Franka simulator: env steps/s (single and vectorised, with a small torch MLP policy in
the loop), physics back-ends for the vector env, and camera render fps. Prints a markdown table.

    .venv/bin/python benchmarks/bench_sim.py --task pick_place --num-envs 16 64 256

``--backend isaaclab`` measures them in Isaac Lab 3's environment (`make isaac-env`; franka_sim.isaaclab_batch).
``--backend warp --device cpu|cuda:N`` measures the same env rows on MuJoCo Warp (`make setup-warp`; its kernels are
compiled or loaded from ~/.cache/warp before the timing starts); the MuJoCo-only rows (physics back-ends, one thread,
rendering) are skipped there. E.g. ``--backend warp --num-envs 1 16 64 --single-steps 50 --expert-episodes 1``.

Numbers depend on what else runs on the machine; run it alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import franka_sim  # noqa: F401  (chooses the GL backend before mujoco is imported)
import mujoco
import mujoco.batch
import mujoco.rollout
import numpy as np
import torch
from franka_sim.env import EnvConfig, FrankaTaskEnv
from franka_sim.experts import ScriptedExpert
from franka_sim.sim import SIM_BACKENDS, BatchSim, SimConfig
from franka_sim.tasks import make_task
from franka_sim.vector_env import VectorEnvConfig, VectorFrankaEnv

ACTION_SCALE = np.array([0.02, 0.02, 0.02, 0.1, 0.1, 0.1, 0.5])
ACTION_OFFSET = np.array([0, 0, 0, 0, 0, 0, 0.5])


@dataclass
class Row:
    what: str
    config: str
    value: float
    unit: str


def make_policy(obs_dim: int, hidden: int = 256) -> torch.nn.Module:
    """A small MLP (random weights) standing in for the residual policy: obs -> tanh 7-D action."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(obs_dim, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, 7), torch.nn.Tanh(),
    ).eval()


def flatten(obs: dict[str, np.ndarray], n: int) -> np.ndarray:
    keys = ("joint_pos", "joint_vel", "gripper_width", "tcp_pos", "tcp_quat", "object_pos", "object_quat")
    return np.concatenate([obs[k].reshape(n, -1) for k in keys], axis=1).astype(np.float32)


def act(policy: torch.nn.Module, flat: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        u = policy(torch.from_numpy(flat)).numpy().astype(np.float64)
    return u * ACTION_SCALE + ACTION_OFFSET


def env_config(backend: str, device: str) -> EnvConfig:
    return EnvConfig(sim=SimConfig(nthread=1, backend=backend, device=device))


def bench_single(task: str, steps: int, backend: str = "mujoco", device: str = "cpu") -> Row:
    env = FrankaTaskEnv(task, seed=0, config=env_config(backend, device))
    obs, _ = env.reset(seed=0)
    policy = make_policy(flatten({k: v[None] for k, v in obs.items()}, 1).shape[1])
    t0 = time.perf_counter()
    for _ in range(steps):
        a = act(policy, flatten({k: v[None] for k, v in obs.items()}, 1))[0]
        obs, _, term, trunc, _ = env.step(a)
        if term or trunc:
            obs, _ = env.reset()
    dt = time.perf_counter() - t0
    return Row("env steps/s, single env + MLP", f"{task}{_on(backend, device)}", steps / dt, "steps/s")


def _on(backend: str, device: str) -> str:
    return "" if backend == "mujoco" else f", {backend} {device}"


def bench_single_expert(task: str, episodes: int, backend: str = "mujoco", device: str = "cpu") -> Row:
    env = FrankaTaskEnv(task, config=env_config(backend, device))
    expert = ScriptedExpert(task)
    n = 0
    t0 = time.perf_counter()
    for seed in range(episodes):
        env.reset(seed=seed)
        expert.reset()
        done = False
        while not done:
            _, _, term, trunc, _ = env.step(expert.act(env.task_state(), 0))
            done = term or trunc
            n += 1
    return Row("env steps/s, single env + scripted expert (contacts)", f"{task}{_on(backend, device)}",
               n / (time.perf_counter() - t0), "steps/s")


def bench_vector(task: str, num_envs: int, steps: int, nthread: int, backend: str = "mujoco",
                 device: str = "cpu") -> Row:
    sim = SimConfig(nthread=nthread, backend=backend, device=device)
    env = VectorFrankaEnv(task, num_envs, seed=0, config=VectorEnvConfig(sim=sim))
    obs, _ = env.reset()
    policy = make_policy(flatten(obs, num_envs).shape[1])
    for _ in range(3):  # warm-up
        obs, *_ = env.step(act(policy, flatten(obs, num_envs)))
    t0 = time.perf_counter()
    for _ in range(steps):
        obs, *_ = env.step(act(policy, flatten(obs, num_envs)))
    dt = time.perf_counter() - t0
    threads = f"nthread={nthread or 'all'}" if backend == "mujoco" else f"{backend} {device}"
    return Row("env steps/s, VectorFrankaEnv + MLP", f"{task}, N={num_envs}, {threads}", num_envs * steps / dt,
               "steps/s")


def bench_physics_backends(task: str, num_envs: int, steps: int, nthread: int) -> list[Row]:
    """Physics only (one control step = 10 substeps per env, controls fixed): Batch vs Python threads vs rollout."""
    sim = BatchSim(make_task(task), num_envs, SimConfig(nthread=nthread))
    rngs = [np.random.default_rng(i) for i in range(num_envs)]
    sim.reset(np.arange(num_envs), [sim.task.sample_reset(r) for r in rngs], rngs)
    model, nsub = sim.model, sim.substeps
    spec = int(mujoco.mjtState.mjSTATE_FULLPHYSICS)
    state0 = np.empty((num_envs, mujoco.mj_stateSize(model, spec)))
    datas = [sim.batch.get_data(i) for i in range(num_envs)]
    for i, d in enumerate(datas):
        mujoco.mj_getState(model, d, state0[i], spec)
    rows = []
    nworkers = nthread or os.cpu_count() or 1

    t0 = time.perf_counter()
    for _ in range(steps):
        sim.batch.step(nstep=nsub)
    rows.append(Row("physics steps/s", f"mujoco.batch.Batch, N={num_envs}", num_envs * steps * nsub /
                    (time.perf_counter() - t0), "mj_step/s"))

    with ThreadPoolExecutor(nworkers) as pool:
        def advance(d: mujoco.MjData) -> None:
            mujoco.mj_step(model, d, nsub)

        t0 = time.perf_counter()
        for _ in range(steps):
            list(pool.map(advance, datas))
        rows.append(Row("physics steps/s", f"ThreadPoolExecutor({nworkers}) x mj_step(nstep), N={num_envs}",
                        num_envs * steps * nsub / (time.perf_counter() - t0), "mj_step/s"))

    ctrl = np.broadcast_to(datas[0].ctrl, (num_envs, nsub, model.nu)).copy()
    with mujoco.rollout.Rollout(nthread=nworkers) as ro:
        t0 = time.perf_counter()
        state = state0
        for _ in range(steps):
            out, _ = ro.rollout(model, datas[:nworkers], state, ctrl, nstep=nsub)
            state = out[:, -1]
        rows.append(Row("physics steps/s", f"mujoco.rollout ({nworkers} threads), N={num_envs}",
                        num_envs * steps * nsub / (time.perf_counter() - t0), "mj_step/s"))
    return rows


def bench_render(task: str, frames: int, size: tuple[int, int]) -> Row:
    env = FrankaTaskEnv(task, seed=0, image_size=size)
    env.reset(seed=0)
    env.render()  # context creation
    t0 = time.perf_counter()
    for i in range(frames):
        if i % 10 == 0:
            env.step(np.array([0.0, 0.0, -0.002, 0.0, 0.0, 0.0, 0.0]))
        env.render()
    return Row(f"render fps {size[1]}x{size[0]} ({os.environ.get('MUJOCO_GL', '?')})", task,
               frames / (time.perf_counter() - t0), "frames/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="pick_place", help="task to benchmark (default: pick_place)")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[16, 64, 256], help="vector env sizes")
    parser.add_argument("--steps", type=int, default=100, help="control steps per vectorised measurement")
    parser.add_argument("--single-steps", type=int, default=1000, help="control steps for the single env")
    parser.add_argument("--expert-episodes", type=int, default=10, help="scripted-expert episodes (single env)")
    parser.add_argument("--render-frames", type=int, default=300, help="frames per render measurement")
    parser.add_argument("--nthread", type=int, default=0, help="physics threads of the batch (0: all CPUs)")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--skip-backends", action="store_true", help="skip the physics back-end comparison")
    parser.add_argument("--backend", choices=SIM_BACKENDS, default="mujoco",
                        help="physics backend of the env rows: mujoco (default), warp (`make setup-warp`) or "
                             "isaaclab (`make isaac-env`; a worker process per env, ~15 s to start each)")
    parser.add_argument("--device", default="cpu",
                        help="device of --backend warp or isaaclab: cpu or cuda:N (default cpu)")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    be = {"backend": args.backend, "device": args.device}
    if args.backend != "mujoco":  # compile (or load from the kernel cache) Warp's kernels before any timing
        bench_vector(args.task, 1, 1, args.nthread, **be)

    rows = [bench_single(args.task, args.single_steps, **be),
            bench_single_expert(args.task, args.expert_episodes, **be)]
    rows += [bench_vector(args.task, n, args.steps, args.nthread, **be) for n in args.num_envs]
    if args.backend == "mujoco":
        rows.append(bench_vector(args.task, max(args.num_envs), args.steps, 1))
        if not args.skip_backends:
            rows += bench_physics_backends(args.task, max(args.num_envs), args.steps, args.nthread)
        rows.append(bench_render(args.task, args.render_frames, (224, 224)))
        rows.append(bench_render(args.task, args.render_frames // 3, (480, 640)))

    versions = f"mujoco {mujoco.__version__}"
    if args.backend == "warp":
        import mujoco_warp
        import warp

        versions += f", mujoco_warp {mujoco_warp.__version__}, warp-lang {warp.__version__} on {args.device}"
    if args.backend == "isaaclab":
        lock = Path(__file__).resolve().parents[1] / "setup" / "isaaclab-env.lock.txt"
        pins = [line for line in lock.read_text().splitlines()
                if line.split("==")[0] in ("isaaclab", "newton", "mujoco-warp", "warp-lang")]
        versions += f", Isaac Lab worker ({', '.join(pins)}) on {args.device}"
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{versions}, torch {torch.__version__} ({args.torch_threads} thread)\n")
    print("| measurement | configuration | value |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r.what} | {r.config} | {r.value:,.0f} {r.unit} |")


if __name__ == "__main__":
    main()
