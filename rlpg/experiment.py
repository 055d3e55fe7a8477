"""What is not pure: run folders, progress lines, metrics files, plots, checkpoints, loading.

A run folder holds `config.json`, `metrics.csv`, `summary.json`, `learning_curve.png` and
`checkpoint/` (orbax) with the final parameters of every seed, stacked on a leading axis.
With `--checkpoint-every`, `resume/update_<n>/` holds the two newest resume points (kept after
the run finishes): the complete training state of every seed (orbax), the metrics of updates
1..n (`metrics.npz`) and `manifest.json` (sizes and checksums of those files, and the config
they were written under), written last.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from rlpg import algos, rollout
from rlpg.progress import ProgressPrinter, seeds_label  # noqa: F401 (ProgressPrinter re-exported: the CLI's progress lines)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CURVE_FILE = "learning_curve.png"
CHECKPOINT_DIR = "checkpoint"
RESUME_DIR = "resume"
MANIFEST_FILE = "manifest.json"
KEEP_RESUME_POINTS = 2
RESUME_SAFE_FLAGS = ("log_every", "checkpoint_every", "track", "compile_cache")
"""Flags that may differ between a resume point and the run continuing it: they change what is
printed, tracked, cached and how often points are saved, not what is computed (chunked runs
equal one program)."""
# Algorithms whose policy acts greedily only: sampling their `policy` would draw from softmax(Q),
# neither their ε-greedy behaviour nor a policy they learned.
GREEDY_ONLY_ALGOS = ("dqn",)


def prepare_run_dir(out: str | Path, overwrite: bool = False, marker: str = CONFIG_FILE) -> Path:
    """Create `out` for a new run. An existing non-empty folder is refused unless it holds a run
    (the file `marker` its program writes: `CONFIG_FILE` for experiments.train, results.json for
    the experiment scripts) and `overwrite` is given, in which case that run is removed; a folder
    of other files, the working directory or one above it, or a symlink, is never removed."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"`out` {out} exists and is not a folder; choose another path.")
    if out.exists() and any(out.iterdir()):
        if not (out / marker).is_file():
            raise FileExistsError(f"`out` {out} holds files but no run (no {marker}); --overwrite replaces only a "
                                  f"run folder: choose another folder.")
        if not overwrite:
            raise FileExistsError(
                f"`out` {out} already holds a run; choose another folder or pass --overwrite to replace it."
            )
        if out.is_symlink() or Path.cwd().resolve().is_relative_to(out.resolve()):
            raise FileExistsError(f"`out` {out} is a symlink or holds the working directory; --overwrite will not "
                                  f"remove it: choose another folder.")
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PermissionError(f"`out` {out} cannot be created: {error.strerror}; choose a writable folder.") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise PermissionError(f"`out` {out} is not writable; choose a writable folder.")
    return out


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


def latest_finished_returns(returns: np.ndarray) -> np.ndarray:
    """Each seed's return of its latest finished episodes at every update: `returns` [S, U], NaN
    where an update finished no episode (`episode_return`), with every NaN replaced by the seed's
    last finite value before it (NaN until its first finished episode).

    Averaging the raw values over seeds at an update would leave out the seeds that finished no
    episode there: with windows shorter than an episode, a seed that has learned to balance ends
    an episode in only some updates, so the average would fall to the weaker seeds in the others."""
    returns = np.asarray(returns, dtype=float)
    updates = np.arange(returns.shape[1])
    last_finite = np.maximum.accumulate(np.where(np.isfinite(returns), updates, 0), axis=1)  # [S, U]
    return np.take_along_axis(returns, last_finite, axis=1)


def plot_learning_curve(path: Path, metrics: Mapping[str, jax.Array], title: str) -> None:
    """Each seed's return of its latest finished training episodes (`latest_finished_returns`)
    vs env steps: every seed faint, their mean, and the min–max band over seeds (both drawn
    where every seed has finished an episode)."""
    plt = pyplot()
    steps = np.asarray(metrics["env_steps"])[0]
    returns = latest_finished_returns(metrics["episode_return"])
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for curve in returns:
        ax.plot(steps, curve, color="tab:blue", alpha=0.15, lw=0.8)
    ax.fill_between(steps, returns.min(0), returns.max(0), color="tab:blue", alpha=0.2, lw=0, label="min–max over seeds")
    ax.plot(steps, returns.mean(0), color="tab:blue", lw=2, label=f"mean of {seeds_label(len(returns))}")
    ax.set_xlabel("env steps (per seed)")
    ax.set_ylabel("return (latest finished training episodes)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    save_figure(fig, path)


class DamagedCheckpointError(ValueError):
    """A checkpoint, resume point or run file that cannot be read as written: the message names
    the file and what is wrong with it."""


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, **extra: Any) -> None:
    """Write `folder/manifest.json` last: the size and SHA-256 of every file under `folder`, and `extra`.

    Written after the data, so a folder whose manifest is present and matches is complete."""
    folder = Path(folder)
    files = {
        str(f.relative_to(folder)): {"size": f.stat().st_size, "sha256": _file_digest(f)}
        for f in sorted(folder.rglob("*")) if f.is_file() and f.name != MANIFEST_FILE
    }
    write_json(folder / MANIFEST_FILE, {"files": files, **extra})


def check_manifest(folder: Path) -> dict:
    """The manifest of `folder`, after checking that every file it lists is there with its size and
    checksum; raises DamagedCheckpointError naming the first file that is not."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise DamagedCheckpointError(f"{folder} is damaged or incomplete: it has no {MANIFEST_FILE} (written last, after the data).")
    manifest = read_json(path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise DamagedCheckpointError(f"{path} is damaged: it lists no files.")
    for name, expected in manifest["files"].items():
        file = folder / name
        if not file.is_file():
            raise DamagedCheckpointError(f"{folder} is damaged: {name} is missing.")
        if file.stat().st_size != expected["size"]:
            raise DamagedCheckpointError(
                f"{folder} is damaged: {name} has {file.stat().st_size} bytes, {expected['size']} were written."
            )
        if _file_digest(file) != expected["sha256"]:
            raise DamagedCheckpointError(f"{folder} is damaged: {name} does not match its checksum.")
    return manifest


def save_params(path: Path, params: Any) -> None:
    """Write a parameter pytree as an orbax checkpoint at `path` (which must not exist), then its manifest."""
    import orbax.checkpoint as ocp

    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(Path(path).absolute(), params)
    checkpointer.wait_until_finished()
    write_manifest(path)


def restore_params(path: Path) -> Any:
    """Read a parameter pytree written by `save_params` (checked against its manifest, if it has one)."""
    path = Path(path)
    if (path / MANIFEST_FILE).exists():
        check_manifest(path)
    return _orbax_restore(path)


def _orbax_restore(path: Path, abstract: Any = None) -> Any:
    """orbax's restore, its errors turned into a DamagedCheckpointError naming the folder."""
    import orbax.checkpoint as ocp

    if not Path(path).is_dir():
        raise DamagedCheckpointError(f"{path} is missing: the checkpoint folder is not there.")
    try:
        return ocp.StandardCheckpointer().restore(Path(path).absolute(), abstract)
    except Exception as error:  # orbax and TensorStore raise many kinds; the user needs the folder
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DamagedCheckpointError(
            f"{path} cannot be read as an orbax checkpoint ({type(error).__name__}: {first_line[:200]})."
        ) from error


def config_fingerprint(saved_config: Mapping[str, Any]) -> dict:
    """What must not change between a resume point and the run that continues it: the run's
    `config.json` less its folder flags (out, overwrite, resume) and `RESUME_SAFE_FLAGS`."""
    fingerprint = json.loads(json.dumps(saved_config, default=_json_default))  # as JSON reads it back
    fingerprint["config"] = {k: v for k, v in fingerprint["config"].items() if k not in RESUME_SAFE_FLAGS}
    skip = RESUME_SAFE_FLAGS + ("out", "overwrite", "resume")
    fingerprint["args"] = {k: v for k, v in fingerprint.get("args", {}).items() if k not in skip}
    return fingerprint


def _hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def save_resume_point(run_dir: Path, state: Any, metrics: Mapping[str, np.ndarray], fingerprint: dict | None = None) -> Path:
    """Write `resume/update_<n>/` (n = the state's update count), atomically; keep the newest
    `KEEP_RESUME_POINTS` points up to n.

    state: the training state of every seed (leading seed axis). metrics: {name: [seeds, n]}.
    fingerprint: `config_fingerprint` of the run, stored with its hash so a changed config is
    refused on resume. The point is assembled under a temporary name, its manifest (sizes and
    checksums) written last, and renamed into place, so a kill at any moment leaves the
    previous points intact.
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
    fingerprint = fingerprint or {}
    write_manifest(tmp, update=update, config=fingerprint, config_sha256=_hash(fingerprint))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    older = [p for p in resume_points(run_dir) if _point_update(p) < update]
    for old in older[: max(len(older) - (KEEP_RESUME_POINTS - 1), 0)]:
        shutil.rmtree(old)
    return final


def _point_update(point: Path) -> int:
    return int(point.name.split("_")[1])


def resume_points(run_dir: Path) -> list[Path]:
    """Every `resume/update_<n>/` folder of a run (n all digits, as `save_resume_point` names
    them), oldest first (intact or not); other folders there, e.g. a user's copy
    `update_0000050_keep`, are not points: never read, never removed."""
    points = [p for p in (Path(run_dir) / RESUME_DIR).glob("update_*") if p.name.split("_", 1)[1].isdigit()]
    return sorted(points, key=_point_update)


def latest_resume_point(run_dir: Path) -> Path | None:
    """The newest `resume/update_<n>/` of a run folder, or None (not checked: see `intact_resume_point`)."""
    points = resume_points(run_dir)
    return points[-1] if points else None


def intact_resume_point(run_dir: Path, fingerprint: dict | None = None) -> tuple[Path, dict] | None:
    """(point, manifest) of the newest resume point whose files match its manifest, or None if the
    run wrote none.

    A damaged newer point is skipped with a warning that names it; if points exist but none is
    intact, DamagedCheckpointError. With `fingerprint` (the run's `config_fingerprint`), a point
    written under another config is refused with a ValueError naming the changed fields.
    """
    points = resume_points(run_dir)
    problems = []
    for point in reversed(points):
        try:
            manifest = check_manifest(point)
        except DamagedCheckpointError as error:
            warnings.warn(f"resume point skipped: {error}", stacklevel=2)
            problems.append(str(error))
            continue
        if fingerprint is not None:
            check_same_config(point, manifest, fingerprint)
        return point, manifest
    if problems:
        raise DamagedCheckpointError(
            f"no intact resume point in {Path(run_dir) / RESUME_DIR}: " + " ".join(problems)
            + " Nothing was restored; the run was not restarted."
        )
    return None


def check_same_config(point: Path, manifest: dict, fingerprint: dict) -> None:
    """Raise ValueError naming the fields of `fingerprint` that differ from the config `point` was written with."""
    if manifest.get("config_sha256") == _hash(fingerprint):
        return
    flat_saved, flat_now = _flatten(manifest.get("config", {})), _flatten(fingerprint)
    changed = [
        f"{name} {flat_saved.get(name, '(absent)')!r} -> {flat_now.get(name, '(absent)')!r}"
        for name in sorted(set(flat_saved) | set(flat_now)) if flat_saved.get(name) != flat_now.get(name)
    ]
    raise ValueError(
        f"the run's {CONFIG_FILE} has changed since {point} was written: {'; '.join(changed)}. "
        f"Restore the old values to resume, or start a new run with the new config."
    )


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        flat.update(_flatten(value, f"{name}.") if isinstance(value, dict) else {name: value})
    return flat


def restore_resume_point(point: Path, abstract_state: Any, manifest: dict | None = None) -> tuple[Any, dict[str, np.ndarray]]:
    """(state, metrics) saved by `save_resume_point`, after checking the point's manifest (unless
    `manifest` is given: the one `intact_resume_point` has just checked); `abstract_state` gives
    the state's structure, shapes and dtypes (e.g. `jax.eval_shape` of the init)."""
    if manifest is None:
        check_manifest(point)
    _check_state_layout(Path(point) / "state", abstract_state)
    state = _orbax_restore(Path(point) / "state", abstract_state)
    with np.load(Path(point) / "metrics.npz") as saved:
        metrics = {k: saved[k] for k in saved.files}
    return state, metrics


def _check_state_layout(path: Path, abstract_state: Any) -> None:
    """ValueError, before any restore, if the state saved in `path` has other top-level fields than
    `abstract_state`, or other names in its `hparams` (a point written by an rlpg whose training
    state was laid out differently, e.g. before the algorithms shared one `TrainState`, or before
    experiments.train passed every numeric Config field as an argument): the files are sound,
    only not this version's, so nothing is called damaged, restarted or deleted."""
    import orbax.checkpoint as ocp

    if not dataclasses.is_dataclass(abstract_state):
        return
    try:
        saved = ocp.StandardCheckpointer().metadata(path.absolute()).item_metadata
    except Exception:  # noqa: BLE001 - unreadable metadata: the restore names the damage
        return
    layouts = [("fields", set(saved.keys()), {field.name for field in dataclasses.fields(abstract_state)})]
    if isinstance(getattr(abstract_state, "hparams", None), dict) and "hparams" in saved:
        layouts.append(("hparams", set(saved["hparams"] or {}), set(abstract_state.hparams)))
    for what, found, expected in layouts:
        if found != expected:
            raise ValueError(
                f"{path.parent} holds a training state laid out by another rlpg version: {what} {sorted(found)}, "
                f"this version's are {sorted(expected)}. Its files are untouched: finish the run with the rlpg "
                f"version that started it, or start a new run."
            )


def read_json(path: Path) -> Any:
    """The JSON in `path`; a file that is not valid JSON raises DamagedCheckpointError naming it and where."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise DamagedCheckpointError(
            f"{path} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}): the file is damaged."
        ) from None
    except UnicodeDecodeError:
        raise DamagedCheckpointError(f"{path} is not a text file: the file is damaged.") from None


def load_config(run_dir: str | Path) -> dict:
    """The `config.json` of a run folder, checked to hold what experiments.train writes."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: `run_dir` must be a folder written by experiments.train.")
    saved = read_json(path)
    missing = [k for k in ("algo", "num_seeds", "seed", "config", "args") if not isinstance(saved, dict) or k not in saved]
    if missing:
        raise DamagedCheckpointError(f"{path} is damaged: it lacks {missing} (experiments.train writes them all).")
    return saved


def load_policy(run_dir: str | Path, seed: int = 0, from_resume_point: bool = False) -> Callable[..., Any]:
    """`act(obs, key=None) -> action` for one unbatched observation, from a finished run.

    Greedy (the distribution's mode) when `key` is None, sampled otherwise (not for the
    `GREEDY_ONLY_ALGOS`, DQN: a key is a ValueError). The action is the one the run's
    evaluation gives the env (`rollout.env_action`): a continuous one shaped to the action Box
    and clipped into it. Works on numpy observations, so the policy can be played in any
    environment with the same spaces, gymnasium's included. `seed` indexes the run's seeds
    (0 .. num_seeds − 1).
    `from_resume_point=True` plays the parameters of the newest intact resume point instead,
    e.g. of a run still training or one that was stopped.
    """
    saved = load_config(run_dir)
    num_seeds = saved["num_seeds"]
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed < num_seeds:
        raise ValueError(f"`seed` must be in [0, {num_seeds}) for this run, an int; got {seed!r}.")
    seed = int(seed)
    module = algo_module(saved["algo"])
    try:
        config = config_from_dict(module.Config, saved["config"])
    except TypeError as error:
        raise DamagedCheckpointError(f"{Path(run_dir) / CONFIG_FILE} is damaged: its config does not fit {module.__name__}.Config ({error}).") from None
    algorithm = module.make_algorithm(config)
    policy, env, env_params = algorithm.policy, algorithm.env, algorithm.env_params
    if from_resume_point:
        found = intact_resume_point(run_dir, config_fingerprint(saved))  # an edited config.json: named, not "damaged"
        if found is None:
            raise FileNotFoundError(f"{run_dir} has no resume point (`from_resume_point`): it was run without --checkpoint-every.")
        keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
        point, manifest = found
        template = jax.eval_shape(jax.vmap(algorithm.init), keys, algos.numeric_hparams(config, num_seeds))  # as experiments.train
        state, _ = restore_resume_point(point, template, manifest)
        all_params = state.params
    else:
        checkpoint = Path(run_dir) / CHECKPOINT_DIR
        if not checkpoint.exists() and resume_points(run_dir):
            point = latest_resume_point(run_dir)
            raise FileNotFoundError(
                f"{run_dir} holds an unfinished run (no {CHECKPOINT_DIR}/; its newest resume point is {point.name}): "
                f"finish it with `python -m experiments.train --resume {run_dir}`, or play the resume point's "
                f"parameters with `rlpg.load_policy({str(run_dir)!r}, from_resume_point=True)`."
            )
        if not checkpoint.exists():
            raise FileNotFoundError(f"{checkpoint} not found: the run did not finish and wrote no resume point.")
        all_params = restore_params(checkpoint)
    params = jax.tree.map(lambda x: jnp.asarray(x[seed]), all_params["policy"])
    obs_shape = env.observation_space(env_params).shape

    @jax.jit
    def _sample(obs, key):
        return rollout.env_action(env, env_params, policy.distribution.sample(key, policy.apply(params, obs[None]))[0])

    @jax.jit
    def _mode(obs):
        return rollout.env_action(env, env_params, policy.distribution.mode(policy.apply(params, obs[None]))[0])

    def act(obs, key: jax.Array | None = None):
        obs = jnp.asarray(obs, jnp.float32)
        if obs.shape != tuple(obs_shape):
            raise ValueError(f"`obs` must be one observation of shape {tuple(obs_shape)}; got {obs.shape}.")
        if key is not None and saved["algo"] in GREEDY_ONLY_ALGOS:
            raise ValueError(f"`key` must be None for a {saved['algo']} run: its policy acts greedily (argmax Q); "
                             f"a sample would draw from softmax(Q), which it never played.")
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
