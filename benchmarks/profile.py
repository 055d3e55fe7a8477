"""Where a training program's time goes: the XLA kernels of one traced run, summed by kind.

    python -m benchmarks.profile                 # REINFORCE, default config
    python -m benchmarks.profile --algo ppo      # PPO at rejax's settings (benchmarks.ppo_vs_rejax)

Compiles the train function, runs it once to warm up, then traces a second run with XLA:CPU's
per-kernel trace events on (`--xla_cpu_enable_xprof_traceme`, added to XLA_FLAGS here, before
jax starts) and sums each kernel's time by kind: the name without its number, e.g. `dot`,
`sort`, `copy`, `add_tanh_fusion`. Loops and calls are containers and not counted. Tracing
slows the many small kernels most, so read the shares and counts, not the absolute times.
Prints the table and writes benchmarks/results/profile-<algo>-<platform>.md.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # before jax starts; imported (e.g. by a test), the module leaves XLA_FLAGS alone
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()

import argparse  # noqa: E402
import collections  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402

from benchmarks.ppo_vs_rejax import REJAX_SETTINGS  # noqa: E402
import rlpg  # noqa: E402
from rlpg import algos, compile_cache  # noqa: E402
from rlpg.algos import ppo, reinforce  # noqa: E402

RESULTS = Path(__file__).parent / "results"
CONFIGS = {  # the profiled runs: 16 updates of REINFORCE's default, 32 of PPO at rejax's settings
    "reinforce": reinforce.Config(total_timesteps=16 * 4000),
    "ppo": ppo.Config(total_timesteps=32 * 2048, **REJAX_SETTINGS),
}
CONTAINERS = ("while", "call", "conditional", "ThunkExecutor")


def kernel_times(trace_dir: str) -> tuple[collections.Counter, collections.Counter]:
    """(seconds, calls) per kernel kind, from the XLA worker threads of a jax.profiler trace."""
    seconds, calls = collections.Counter(), collections.Counter()
    for path in Path(trace_dir).rglob("*.xplane.pb"):
        for plane in jax.profiler.ProfileData.from_file(str(path)).planes:
            for line in plane.lines:
                if "XLA" not in line.name or "PjRt" in line.name:
                    continue
                for event in line.events:
                    if event.name.startswith(CONTAINERS):
                        continue
                    kind = re.sub(r"^end: ", "", re.sub(r"[.\d]+$", "", event.name))
                    seconds[kind] += event.duration_ns / 1e9
                    calls[kind] += 1
    return seconds, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=tuple(CONFIGS), default="reinforce")
    parser.add_argument("--top", type=int, default=15, help="kernel kinds to list")
    args = parser.parse_args()
    compile_cache.enable()
    rlpg.unroll_threefry_on_cpu()  # as experiments.train trains
    config = CONFIGS[args.algo]
    train = jax.jit(algos.train_fn(algos.ALGOS[args.algo].make_algorithm(config)))
    key = jax.random.PRNGKey(0)
    jax.block_until_ready(train(key))
    t0 = time.perf_counter()
    jax.block_until_ready(train(key))
    untraced_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            jax.block_until_ready(train(key))
        seconds, calls = kernel_times(trace_dir)
    if not seconds:
        raise RuntimeError("the trace holds no XLA kernel events: per-kernel tracing needs XLA:CPU")
    total = sum(seconds.values())
    device = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}"
    steps = config.num_updates * config.steps_per_update
    lines = [f"# Where {args.algo} training's time goes ({device}, jax {jax.__version__})", "",
             f"{config.num_updates} updates × {config.steps_per_update:,} env steps; untraced run {untraced_s:.2f} s "
             f"({steps / untraced_s:,.0f} env-steps/s). Kernel time summed by kind in a traced run "
             f"({total:.2f} s in kernels; tracing inflates small kernels, so compare shares).", "",
             "| kernel kind | share | calls | calls per update |", "| --- | --- | --- | --- |"]
    for kind, s in seconds.most_common(args.top):
        lines.append(f"| {kind} | {s / total:.1%} | {calls[kind]:,} | {calls[kind] / config.num_updates:,.0f} |")
    print("\n".join(lines), flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"profile-{args.algo}-{jax.devices()[0].platform}.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
