"""What is not pure: run folders, progress lines, metrics files, plots, checkpoints, loading.

A run folder holds `config.json`, `metrics.csv`, `summary.json`, `learning_curve.png` and
`checkpoint/` (orbax) with the final parameters of every seed, stacked on a leading axis.
While it trains, `resume/update_<n>/` holds the latest resume point: the complete training
state of every seed (orbax) and the metrics of updates 1..n (`metrics.npz`).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from rlpg import algos

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CURVE_FILE = "learning_curve.png"
CHECKPOINT_DIR = "checkpoint"
RESUME_DIR = "resume"


def prepare_run_dir(out: str | Path, overwrite: bool = False) -> Path:
    """Create `out` for a new run. An existing non-empty folder is refused unless `overwrite`,
    in which case its previous contents are removed."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"`out` {out} exists and is not a folder; choose another path.")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"`out` {out} already holds a run; choose another folder or pass --overwrite to replace it."
            )
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PermissionError(f"`out` {out} cannot be created: {error.strerror}; choose a writable folder.") from None
    if not os.access(out, os.W_OK):
        raise PermissionError(f"`out` {out} is not writable; choose a writable folder.")
    return out


class ProgressPrinter:
    """A `progress` callback for `make_train`: one line per logged update.

    With `vectorized=True` (seeds under `jax.vmap`, each reporting separately) a line comes once
    all `num_seeds` have reported that update and shows their mean and range; otherwise the
    seeds run one after another and each report is a line of its own, labelled with its seed.
    """

    def __init__(self, num_seeds: int, total_updates: int, vectorized: bool = False, print_fn: Callable[[str], None] = print):
        self.num_seeds = num_seeds
        self.total_updates = total_updates
        self.vectorized = vectorized
        self.print_fn = print_fn
        self._pending: dict[int, list[dict]] = {}
        self._seed = 0
        self._last_update = -1
        self._lock = threading.Lock()
        self._start = time.perf_counter()

    def begin_chunk(self) -> None:
        """Call before each call of a program that runs the seeds one after another."""
        with self._lock:
            self._seed, self._last_update = 0, -1

    def __call__(self, metrics: Mapping[str, Any]) -> None:
        row = {k: float(np.asarray(v)) for k, v in metrics.items()}
        update = int(row["update"])
        with self._lock:
            if self.vectorized:
                rows = self._pending.setdefault(update, [])
                rows.append(row)
                if len(rows) < self.num_seeds:
                    return
                del self._pending[update]
                who = f"{len(rows)} seeds"
            else:  # seeds run one after another: a report not later than the last is the next seed's
                if update <= self._last_update:
                    self._seed += 1
                self._last_update = update
                rows = [row]
                who = f"seed {self._seed + 1}/{self.num_seeds}"
        returns = np.array([r["episode_return"] for r in rows])
        finite = returns[np.isfinite(returns)]
        mean = f"{finite.mean():8.2f}" if finite.size else "     n/a"
        spread = f" [{finite.min():.1f}, {finite.max():.1f}]" if len(rows) > 1 and finite.size else ""
        extra = "".join(f"  {k} {np.mean([r[k] for r in rows]):.3f}" for k in ("entropy", "epsilon") if k in row)
        self.print_fn(
            f"{who}  update {update:>5d}/{self.total_updates}  env steps {int(rows[0]['env_steps']):>10,d}  "
            f"return {mean}{spread}{extra}  {time.perf_counter() - self._start:6.1f}s"
        )


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(x):
    if isinstance(x, (np.generic, jnp.ndarray)):
        return np.asarray(x).tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot write {type(x).__name__} to JSON")


def write_metrics_csv(path: Path, metrics: Mapping[str, jax.Array]) -> None:
    """One row per (seed, update) from metrics arrays of shape [num_seeds, num_updates]."""
    first = [k for k in ("update", "env_steps") if k in metrics]
    names = first + sorted(k for k in metrics if k not in first)
    arrays = {k: np.asarray(v) for k, v in metrics.items()}
    num_seeds, num_updates = arrays[names[0]].shape
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["seed", *names])
        for s in range(num_seeds):
            for u in range(num_updates):
                writer.writerow([s, *(arrays[k][s, u].item() for k in names)])


def pyplot():
    """matplotlib.pyplot, imported on first use (plotting is optional): on the headless Agg
    backend, unless pyplot was imported before with a backend of its own (a notebook keeps
    its inline plots)."""
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    """Lay out `fig`, write it to `path` and free it."""
    fig.tight_layout()
    fig.savefig(path)
    pyplot().close(fig)


def plot_learning_curve(path: Path, metrics: Mapping[str, jax.Array], title: str) -> None:
    """Mean episode return over seeds vs env steps, with the min–max band and each seed faint."""
    plt = pyplot()
    steps = np.asarray(metrics["env_steps"])[0]
    returns = np.asarray(metrics["episode_return"], dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for curve in returns:
        ax.plot(steps, curve, color="tab:blue", alpha=0.15, lw=0.8)
    with np.errstate(all="ignore"), warnings.catch_warnings():  # updates where no episode ended are NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        ax.fill_between(steps, np.nanmin(returns, 0), np.nanmax(returns, 0), color="tab:blue", alpha=0.2, lw=0)
        ax.plot(steps, np.nanmean(returns, 0), color="tab:blue", lw=2, label=f"mean of {len(returns)} seeds")
    ax.set_xlabel("env steps (per seed)")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    save_figure(fig, path)


def save_params(path: Path, params: Any) -> None:
    """Write a parameter pytree as an orbax checkpoint at `path` (which must not exist)."""
    import orbax.checkpoint as ocp

    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(Path(path).absolute(), params)
    checkpointer.wait_until_finished()


def restore_params(path: Path) -> Any:
    """Read a parameter pytree written by `save_params`."""
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer().restore(Path(path).absolute())


def save_resume_point(run_dir: Path, state: Any, metrics: Mapping[str, np.ndarray]) -> Path:
    """Write `resume/update_<n>/` (n = the state's update count), atomically, then drop older points.

    state: the training state of every seed (leading seed axis). metrics: {name: [seeds, n]}.
    The point is assembled under a temporary name and renamed into place, so a kill at any
    moment leaves the previous point intact.
    """
    import orbax.checkpoint as ocp

    root = Path(run_dir).absolute() / RESUME_DIR
    update = int(np.asarray(state.update).reshape(-1)[0])
    final = root / f"update_{update:07d}"
    tmp = root / f".tmp-update_{update:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp / "state", state)
    checkpointer.wait_until_finished()
    np.savez(tmp / "metrics.npz", **{k: np.asarray(v) for k, v in metrics.items()})
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in root.glob("update_*"):
        if old != final:
            shutil.rmtree(old)
    return final


def latest_resume_point(run_dir: Path) -> Path | None:
    """The newest complete `resume/update_<n>/` of a run folder, or None."""
    points = sorted((Path(run_dir) / RESUME_DIR).glob("update_*"))
    return points[-1] if points else None


def restore_resume_point(point: Path, abstract_state: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """(state, metrics) saved by `save_resume_point`; `abstract_state` gives the state's
    structure, shapes and dtypes (e.g. `jax.eval_shape` of the init)."""
    import orbax.checkpoint as ocp

    state = ocp.StandardCheckpointer().restore(Path(point).absolute() / "state", abstract_state)
    with np.load(Path(point) / "metrics.npz") as saved:
        metrics = {k: saved[k] for k in saved.files}
    return state, metrics


def load_config(run_dir: str | Path) -> dict:
    """The `config.json` of a run folder."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: `run_dir` must be a folder written by experiments.train.")
    return json.loads(path.read_text())


def load_policy(run_dir: str | Path, seed: int = 0) -> Callable[..., Any]:
    """`act(obs, key=None) -> action` for one unbatched observation, from a finished run.

    Greedy (the distribution's mode) when `key` is None, sampled otherwise. Works on numpy
    observations, so the policy can be played in any environment with the same spaces,
    gymnasium's included. `seed` indexes the run's seeds (0 .. num_seeds − 1).
    """
    saved = load_config(run_dir)
    num_seeds = saved["num_seeds"]
    if not 0 <= seed < num_seeds:
        raise ValueError(f"`seed` must be in [0, {num_seeds}) for this run; got {seed}.")
    module = algo_module(saved["algo"])
    algorithm = module.make_algorithm(config_from_dict(module.Config, saved["config"]))
    policy, env, env_params = algorithm.policy, algorithm.env, algorithm.env_params
    params = jax.tree.map(lambda x: jnp.asarray(x[seed]), restore_params(Path(run_dir) / CHECKPOINT_DIR)["policy"])
    obs_shape = env.observation_space(env_params).shape

    @jax.jit
    def _sample(obs, key):
        return policy.distribution.sample(key, policy.apply(params, obs[None]))[0]

    @jax.jit
    def _mode(obs):
        return policy.distribution.mode(policy.apply(params, obs[None]))[0]

    def act(obs, key: jax.Array | None = None):
        obs = jnp.asarray(obs, jnp.float32)
        if obs.shape != tuple(obs_shape):
            raise ValueError(f"`obs` must be one observation of shape {tuple(obs_shape)}; got {obs.shape}.")
        action = np.asarray(_mode(obs) if key is None else _sample(obs, key))
        return action.item() if action.ndim == 0 else action

    return act


def config_from_dict(config_class, values: dict):
    """A Config from its `dataclasses.asdict` form as read back from JSON (lists become tuples)."""
    return config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def algo_module(name: str):
    """The algorithm module registered under `name`, e.g. `rlpg.algos.reinforce`."""
    if name not in algos.ALGOS:
        raise ValueError(f"`algo` must be one of {sorted(algos.ALGOS)}; got {name!r}.")
    return algos.ALGOS[name]
