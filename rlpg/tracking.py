"""Live experiment tracking: the per-update metrics of every seed, logged while a run trains.

`experiments.train --track tensorboard|wandb` logs each chunk's metrics as soon as the chunk
returns (arrays [num_seeds, n], the rows `metrics.csv` will hold), from the host: nothing is
added to the compiled program.

- tensorboard (`pip install "rlpg[tensorboard]"`, tensorboardX): one event file per seed under
  `<run>/tensorboard/seed_<i>/`, so TensorBoard shows the seeds as runs side by side
  (`tensorboard --logdir <run>/tensorboard`); every metric is a scalar tagged by its name.
- wandb (`pip install "rlpg[wandb]"`): one Weights & Biases run named after the run folder,
  with the run's config; metric `k` of seed i is `seed_<i>/k`. Without `WANDB_API_KEY` (and
  `WANDB_MODE` unset) it runs offline, into `<run>/wandb/`; `wandb sync` uploads it later. The
  run id is kept in the run folder, so a resumed run logs to the same W&B run.

The step of every point is the update's `env_steps` (per seed), the x-axis RL curves are drawn on.
A NaN (the mean return of an update in which no episode finished) is not logged: a gap.
A chunk is logged before its resume point is written, so a run killed outright between the
two (SIGKILL; SIGINT and SIGTERM save first) logs that chunk again when resumed: the same values
at the same steps.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

TRACKERS = ("none", "tensorboard", "wandb")
TRACKER_MODULES = {"tensorboard": "tensorboardX", "wandb": "wandb"}  # the package each needs
TENSORBOARD_DIR = "tensorboard"

__all__ = ["TENSORBOARD_DIR", "TRACKERS", "TensorBoardTracker", "Tracker", "WandbTracker", "check_available", "make_tracker"]


def _rows(metrics: Mapping[str, Any]):
    """(seed, env_steps, {name: float}) for each seed and update of metrics arrays [num_seeds, n];
    NaN values (the return of an update in which no episode finished) are left out: a gap in the plot."""
    arrays = {k: np.asarray(v) for k, v in metrics.items()}
    num_seeds, n = arrays["env_steps"].shape
    for seed in range(num_seeds):
        for i in range(n):
            yield seed, int(arrays["env_steps"][seed, i]), {k: v[seed, i].item() for k, v in arrays.items()
                                                                if k != "env_steps" and not np.isnan(v[seed, i])}


class Tracker:
    """Logs nothing (`--track none`); the others override `log_chunk` and `close`. A context manager."""

    def log_chunk(self, metrics: Mapping[str, Any]) -> None:
        """Log the metrics of a chunk of updates, arrays [num_seeds, n] with "env_steps" among them."""

    def close(self) -> None:
        """Flush and close (called on leaving the `with` block, also on an error or a signal)."""

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


class TensorBoardTracker(Tracker):
    """TensorBoard event files, one folder per seed: `<out>/tensorboard/seed_<i>/`. Written
    synchronously (tensorboardX's `EventsWriter`, not its queued `SummaryWriter`), so a chunk's
    points are on disk when `log_chunk` returns."""

    def __init__(self, out: Path, num_seeds: int):
        _require(TRACKER_MODULES["tensorboard"], "tensorboard")
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto import event_pb2, summary_pb2

        self._event, self._summary = event_pb2.Event, summary_pb2.Summary
        self.writers = []
        for i in range(num_seeds):
            folder = Path(out) / TENSORBOARD_DIR / f"seed_{i}"
            folder.mkdir(parents=True, exist_ok=True)
            self.writers.append(EventsWriter(str(folder / "events")))

    def log_chunk(self, metrics: Mapping[str, Any]) -> None:
        now = time.time()
        for seed, step, row in _rows(metrics):
            values = [self._summary.Value(tag=name, simple_value=value) for name, value in row.items()]
            self.writers[seed].write_event(self._event(wall_time=now, step=step, summary=self._summary(value=values)))
        for writer in self.writers:
            writer.flush()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


class WandbTracker(Tracker):
    """One Weights & Biases run; seed i's metric k is logged as `seed_<i>/k`. Offline (into
    `<out>/wandb/`) unless `WANDB_MODE` says otherwise or `WANDB_API_KEY` is set.

    The run's id is kept in `<out>/wandb/RUN_ID_FILE`, so a resumed run folder logs to the same
    W&B run (`resume="allow"`) online. wandb cannot resume offline: the continuation is a second
    offline folder of the same id, which `wandb sync --append` adds after the first."""

    RUN_ID_FILE = "run_id"

    def __init__(self, out: Path, config: Mapping[str, Any], project: str = "rlpg"):
        wandb = _require(TRACKER_MODULES["wandb"], "wandb")
        mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        id_file = Path(out) / "wandb" / self.RUN_ID_FILE
        if not id_file.exists():
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(secrets.token_hex(8))
        self.run = wandb.init(project=project, name=Path(out).name, dir=str(out), config=dict(config), mode=mode,
                              id=id_file.read_text().strip(), resume="allow")

    def log_chunk(self, metrics: Mapping[str, Any]) -> None:
        by_step: dict[int, dict] = {}
        for seed, step, row in _rows(metrics):
            by_step.setdefault(step, {}).update({f"seed_{seed}/{k}": v for k, v in row.items()})
        for step in sorted(by_step):
            self.run.log(by_step[step], step=step)

    def close(self) -> None:
        self.run.finish()


def make_tracker(kind: str, out: Path, num_seeds: int, config: Mapping[str, Any]) -> Tracker:
    """The tracker `--track kind` asks for (kind in TRACKERS), logging into the run folder `out`.
    A missing package is an ImportError naming the extra to install, raised before training."""
    check_available(kind)
    if kind == "tensorboard":
        return TensorBoardTracker(out, num_seeds)
    if kind == "wandb":
        return WandbTracker(out, config)
    return Tracker()


def check_available(kind: str) -> None:
    """ImportError naming the extra to install when `--track kind` needs a package that is not
    installed; ValueError for an unknown kind. Costs an import, nothing else."""
    if kind not in TRACKERS:
        raise ValueError(f"`track` must be one of {TRACKERS}; got {kind!r}.")
    if kind != "none":
        _require(TRACKER_MODULES[kind], kind)


def _require(module: str, extra: str):
    try:
        return __import__(module)
    except ImportError as error:
        raise ImportError(f'`--track {extra}` needs {module}: pip install "rlpg[{extra}]"') from error
