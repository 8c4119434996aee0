"""`residual-sweep`: a Ray Tune grid of residual-train runs over tasks x seeds x chosen options.

    .venv/bin/residual-sweep --tasks cube_lift stack_cube --seeds 0 1 --grid exploration-noise=0.1,0.3 \\
        --train.total-steps 60000 --train.num-envs 8 --cpus-per-trial 2

Each trial is residual-train itself: ``Trainer(Args).train()`` with the command line's thread limits (one BLAS
thread, ``--train.threads`` torch threads) and the trial's CPUs as MuJoCo threads, on the options ``--train.*`` (every
residual-train option) with the trial's task, seed and grid values. It writes where a plain run writes:
``<out-root>/<task>/seed<seed>`` (best.*, last.*, eval.csv, state/, ...), with ``-<option>=<value>`` appended per grid
option (``seed0-exploration-noise=0.1``), so a trial's best checkpoint is the plain run's with the same options.
At the end: one table (residual-compare's columns, one row per trial) and one plot of every learning curve, in
``--summary-dir``.

Resuming: a trial whose folder holds residual-train state continues from it (``--resume``), and ``--restore`` continues
the Tune experiment in ``<storage-path>/<name>`` (finished trials are kept, interrupted ones restart and resume from
their last evaluation's state).

Ray: started on this machine (``ray.init()``, all CPUs or ``--num-cpus``), or joined with ``--address`` (a cluster
from ``ray start --head`` / ``ray start --address=HEAD:6379`` on each node). On several nodes every node needs the
same .venv and project checkout, and ``--out-root`` and ``--storage-path`` must be shared storage (NFS; S3 URIs for
``--storage-path``), since a trial writes its run folder on whichever node runs it.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tyro

from trainer.compare import markdown_table, summarize
from trainer.plots import plot_learning_curves
from trainer.ray_support import RayMissingError, require_ray, start_ray
from trainer.residual_train_args import Args


@dataclass
class SweepArgs:
    """residual-sweep's command line (``tyro.cli(SweepArgs)``)."""

    tasks: tuple[str, ...] = ("cube_lift",)
    """Tasks of the grid (each one of cube_lift, pick_place, stack_cube, close_drawer, stand_cup_up)."""
    seeds: tuple[int, ...] = (0,)
    """Seeds of the grid (residual-train --seed)."""
    grid: tuple[str, ...] = ()
    """More grid axes, each OPTION=V1,V2,... with OPTION a residual-train option without its dashes (e.g.
    exploration-noise=0.1,0.3 or td3.actor-lr=1e-4,3e-4; a value with spaces gives several words, e.g.
    td3.hidden=64 64,256 256; true/false for on/off options). Trials: tasks x seeds x every axis."""
    train: Args = field(default_factory=Args)
    """residual-train's options for every trial (--train.total-steps, --train.num-envs, ...; the trial sets task,
    seed and out_dir, and decides --resume)."""
    out_root: Path = Path("runs/residual")
    """Trial folders: <out-root>/<task>/seed<seed>[-<option>=<value>...] (as a plain run: runs/residual/...)."""
    cpus_per_trial: int = 1
    """CPUs Ray reserves for each trial; they are also its MuJoCo threads (--physics-threads)."""
    max_concurrent: int = 0
    """Trials run at once (0: as many as the CPUs allow)."""
    address: str | None = None
    """Ray cluster to join (auto, ray://HEAD:10001 or HEAD:6379); default: start Ray on this machine."""
    num_cpus: int | None = None
    """CPUs of a Ray started here (default: all); ignored with --address (the cluster's nodes bring theirs)."""
    storage_path: str = "runs/sweeps"
    """Tune's experiment storage (trial results, the experiment state --restore reads): a folder (made absolute) or
    a URI (s3://...); shared storage on a cluster of several nodes."""
    name: str = "residual-sweep"
    """Experiment name: its folder is <storage-path>/<name>."""
    restore: bool = False
    """Continue the experiment <storage-path>/<name> (Tuner.restore): finished trials are kept, the others rerun and
    resume from their residual-train state."""
    resume_trials: bool = True
    """A trial whose folder already holds residual-train state continues from it (residual-train --resume); with
    --no-resume-trials it starts over in that folder."""
    summary_dir: Path | None = None
    """Where summary.md/.json/.png go (default runs/sweeps/<name>)."""
    threshold: float = 0.95
    """Summary: the success rate the 'first at' columns look for (residual-compare --threshold)."""
    last: int = 5
    """Summary: how many final evaluations the mean rate averages (residual-compare --last)."""

    def __post_init__(self) -> None:
        from residual_core.tasks import check_task

        for t in self.tasks:
            check_task(t)
        if not self.tasks or not self.seeds:
            raise ValueError("--tasks and --seeds need at least one value each")
        if self.train.out_dir is not None or self.train.resume:
            raise ValueError("--train.out-dir / --train.resume: a trial's folder and resumption are the sweep's "
                             "(--out-root, --resume-trials)")
        if self.train.collectors:
            raise ValueError("--train.collectors: trials collect in their own process (Ray already runs the trials)")
        if self.cpus_per_trial < 1 or self.max_concurrent < 0:
            raise ValueError(f"need cpus_per_trial >= 1 and max_concurrent >= 0, got {self.cpus_per_trial}, "
                             f"{self.max_concurrent}")
        for axis in self.grid:
            parse_axis(axis)


def parse_axis(axis: str) -> tuple[str, list[str]]:
    """``"option=v1,v2"`` -> ("option", ["v1", "v2"])."""
    opt, sep, values = axis.partition("=")
    opt = opt.strip().lstrip("-").replace("_", "-")
    vals = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not opt or not vals:
        raise ValueError(f"--grid {axis!r}: expected OPTION=V1,V2,... (e.g. exploration-noise=0.1,0.3)")
    return opt, vals


def option_argv(opt: str, value: str) -> list[str]:
    """residual-train's command-line words for one grid value (true/false: the --opt / --no-opt flags)."""
    if value.lower() in ("true", "false"):
        prefix, _, leaf = opt.rpartition(".")
        return [f"--{opt}" if value.lower() == "true" else f"--{prefix + '.' if prefix else ''}no-{leaf}"]
    return [f"--{opt}", *value.split()]


def trial_specs(a: SweepArgs) -> list[dict]:
    """Every trial of the grid: task, seed, grid options [(option, value)] and its folder's name suffix."""
    combos: list[list[tuple[str, str]]] = [[]]
    for opt, vals in (parse_axis(x) for x in a.grid):
        combos = [c + [(opt, v)] for c in combos for v in vals]
    return [{"task": t, "seed": s, "options": c, "suffix": "".join(f"-{o}={v.replace(' ', '_')}" for o, v in c)}
            for t in a.tasks for s in a.seeds for c in combos]


def trial_out_dir(out_root: Path, spec: dict) -> Path:
    return Path(out_root) / spec["task"] / f"seed{spec['seed']}{spec['suffix']}"


def trial_args(base: Args, spec: dict, out_root: Path) -> Args:
    """residual-train's Args of a trial: the sweep's --train.* with its task, seed, folder and grid values, parsed
    by residual-train's own command line (so a grid value means what it means there)."""
    argv = ["--task", spec["task"], "--seed", str(spec["seed"]), "--out-dir", str(trial_out_dir(out_root, spec))]
    for opt, value in spec["options"]:
        argv += option_argv(opt, value)
    return tyro.cli(Args, args=argv, default=base, prog="residual-train")


def run_trial(config: dict, base: Args, out_root: str, cwd: str, cpus: int, resume_trials: bool) -> None:
    """One Tune trial: residual-train's code path on the trial's Args; reports the run's summary to Tune."""
    from ray import tune
    from residual_core.runtime import limit_blas_threads

    from trainer.residual_train import Trainer

    if os.path.isdir(cwd):  # relative options (checkpoints, perception model) mean what they mean in the driver
        os.chdir(cwd)
    limit_blas_threads(1)  # what residual-train's main() does (a trial does not run main())
    args = trial_args(base, config["trial"], Path(out_root))
    resume = resume_trials and (args.out_dir / "state" / "meta.json").is_file()
    summary = Trainer(replace(args, physics_threads=cpus, resume=resume)).train()
    best = summary["best"] or [0, None]
    tune.report({"best_successes": best[0], "best_mean_steps": None if best[1] is None else -best[1],
                 "env_steps": summary["env_steps"], "resumed": resume, "out_dir": summary["out_dir"]})


def fit(a: SweepArgs, specs: list[dict], out_root: Path) -> Any:
    """Run (or ``--restore``) the Tune experiment; returns its ResultGrid."""
    ray = require_ray()
    from ray import tune

    storage = a.storage_path if "://" in a.storage_path else str(Path(a.storage_path).resolve())
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=a.train, out_root=str(out_root), cwd=os.getcwd(), cpus=a.cpus_per_trial,
                             resume_trials=a.resume_trials),
        {"cpu": a.cpus_per_trial})
    started = start_ray(a.address, a.num_cpus)
    try:
        path = f"{storage.rstrip('/')}/{a.name}"
        if a.restore:
            if not tune.Tuner.can_restore(path):
                raise ValueError(f"--restore: no Tune experiment to restore in {path}")
            tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable, param_space={"trial": tune.grid_search(specs)},
                tune_config=tune.TuneConfig(max_concurrent_trials=a.max_concurrent or None, reuse_actors=True,
                                            trial_dirname_creator=lambda t: f"{t.trial_id}"),
                run_config=tune.RunConfig(name=a.name, storage_path=storage, verbose=1))
        return tuner.fit()
    finally:
        if started:
            ray.shutdown()


def summarize_sweep(a: SweepArgs, specs: list[dict], out_root: Path) -> list[dict]:
    """The summary table (.md, .json) and learning-curve plot (.png) of every trial, in --summary-dir."""
    out = a.summary_dir or Path("runs/sweeps") / a.name
    out.mkdir(parents=True, exist_ok=True)
    runs = {f"{s['task']}/seed{s['seed']}{s['suffix']}": trial_out_dir(out_root, s) for s in specs}
    rows = [summarize(d, a.threshold, a.last, label=label) for label, d in runs.items()]
    table = markdown_table(rows)
    (out / "summary.md").write_text(table + "\n")
    (out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot_learning_curves({label: d / "eval.csv" for label, d in runs.items()}, out / "summary.png",
                         title=f"residual-sweep {a.name}")
    print(table)
    print(f"wrote {out / 'summary.md'}, summary.json, summary.png")
    return rows


def main(argv: list[str] | None = None) -> int:
    try:
        a = tyro.cli(SweepArgs, args=argv, prog="residual-sweep", description=__doc__)
        specs = trial_specs(a)
        out_root = a.out_root.resolve()
        for s in specs:  # every trial's options parse before anything starts
            trial_args(a.train, s, out_root)
        print(f"[residual-sweep] {len(specs)} trials ({len(a.tasks)} tasks x {len(a.seeds)} seeds x "
              f"{len(specs) // (len(a.tasks) * len(a.seeds))} option sets) into {out_root}")
        results = fit(a, specs, out_root)
        if results.errors:
            for e in results.errors:
                print(f"residual-sweep: a trial failed: {e}", file=sys.stderr)
            return 1
        unfinished = sum("out_dir" not in (r.metrics or {}) for r in results)
        if unfinished or len(results) < len(specs):
            print(f"residual-sweep: interrupted with {max(unfinished, len(specs) - len(results))} trials unfinished; "
                  "continue with the same command and --restore", file=sys.stderr)
            return 1
        summarize_sweep(a, specs, out_root)
    except (ValueError, FileNotFoundError, RayMissingError) as exc:
        print(f"residual-sweep: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
