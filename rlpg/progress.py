"""Progress lines of a training run: one printer for the in-program callback (`log_every`) and
for the host (`report_chunk`, after a chunk of updates), so every line reads the same."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Mapping

import numpy as np


def seeds_label(num_seeds: int) -> str:
    """"1 seed", "5 seeds": how progress lines, the run's header and its plot name the seeds."""
    return f"{num_seeds} seed{'s' if num_seeds != 1 else ''}"


class ProgressPrinter:
    """A `progress` callback for `make_train`: one line per logged update.

    With `vectorized=True` (seeds under `jax.vmap`, each reporting separately) a line comes once
    all `num_seeds` have reported that update and shows their mean and range; otherwise the
    seeds run one after another and each report is a line of its own, labelled with its seed.
    `report_chunk` prints the same lines from the host, from a chunk's returned metrics (a
    program with an in-program callback is never written to the persistent compilation cache).
    """

    def __init__(self, num_seeds: int, total_updates: int, vectorized: bool = False, print_fn: Callable[[str], None] | None = None):
        self.num_seeds = num_seeds
        self.total_updates = total_updates
        self.vectorized = vectorized
        self.print_fn = print_fn or (lambda line: print(line, flush=True))
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
                who = f"seed {self._seed + 1}/{self.num_seeds}" if self.num_seeds > 1 else ""
        self.print_fn(self._line(who, rows))

    def report_chunk(self, metrics: Mapping[str, Any], log_every: int) -> None:
        """Lines for a chunk of updates run without in-program callbacks, from the host: metrics
        arrays [num_seeds, n] (all seeds, as a chunk program returns them); one line, over the
        seeds, per update divisible by `log_every` (0: none)."""
        if not log_every:
            return
        arrays = {k: np.asarray(v) for k, v in metrics.items()}
        num_seeds = arrays["update"].shape[0]
        who = seeds_label(num_seeds)
        for i in np.nonzero(arrays["update"][0] % log_every == 0)[0]:
            self.print_fn(self._line(who, [{k: float(v[seed, i]) for k, v in arrays.items()} for seed in range(num_seeds)]))

    def _line(self, who: str, rows: list[dict]) -> str:
        """One progress line of the rows (one per seed) of an update: mean return over seeds [min, max]
        of the seeds that finished an episode in it, "(k of S seeds)" when not all did."""
        returns = np.array([r["episode_return"] for r in rows])
        finite = returns[np.isfinite(returns)]
        mean = f"{finite.mean():8.2f}" if finite.size else "     n/a"
        spread = f" [{finite.min():.1f}, {finite.max():.1f}]" if len(rows) > 1 and finite.size else ""
        if 0 < finite.size < len(rows):
            spread += f" ({finite.size} of {len(rows)} seeds)"
        extra = "".join(f"  {k} {np.mean([r[k] for r in rows]):.3f}" for k in ("entropy", "epsilon") if k in rows[0])
        return (f"{who + '  ' if who else ''}update {int(rows[0]['update']):>5d}/{self.total_updates}  env steps {int(rows[0]['env_steps']):>10,d}  "
                f"return {mean}{spread}{extra}  {time.perf_counter() - self._start:6.1f}s")
