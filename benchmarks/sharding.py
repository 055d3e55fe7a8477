"""REINFORCE training throughput with rlpg.sharding on 1, 2 and 4 forced CPU devices.

    python -m benchmarks.sharding            # a few minutes on 2 CPU cores
    python -m benchmarks.sharding --quick    # fewer updates, for a smoke run

Each device count runs in its own subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=D, and measures two layouts on CartPole-v1:
seed-sharded (mesh seeds=D × envs=1, 4 seeds of 16 envs) and env-sharded (mesh 1 × D, one seed
of 64 envs, gradients all-reduced). The reference is the unsharded program (`jax.jit` of
`algos.over_seeds`) in the 1-device process. Forced host devices are slices of the same CPU
cores (each device a thread), so on this machine the table measures the sharding overhead
and at most the cores' parallelism, not a multi-device speed-up.
Prints a table and writes benchmarks/results/sharding-<platform>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import rlpg
import jax
import jax.numpy as jnp

from benchmarks.throughput import training_config
from rlpg import algos, compile_cache, sharding
from rlpg.algos import reinforce

RESULTS = Path(__file__).parent / "results"
DEVICE_COUNTS = (1, 2, 4)
NUM_STEPS = 128
NUM_UPDATES = {False: 16, True: 4}  # per run, by --quick
LAYOUTS = {  # name: (num_seeds, num_envs, mesh seeds, mesh envs) for D devices
    "seeds": lambda d: (4, 16, d, 1),
    "envs": lambda d: (1, 64, 1, d),
}


def measure(train, keys, repeats: int) -> dict:
    """Compile seconds, and env-steps/s of the best of `repeats` runs after a warm-up run."""
    t0 = time.perf_counter()
    compiled = jax.jit(train).lower(keys).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(keys))
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(keys))
        runs.append(time.perf_counter() - t0)
    return {"compile_s": compile_s, "run_s": min(runs)}


def worker(num_updates: int, repeats: int) -> dict:
    """This process's devices: every layout sharded (and unsharded on one device)."""
    count = jax.device_count()
    rows = []
    for layout, sizes in LAYOUTS.items():
        num_seeds, num_envs, mesh_seeds, mesh_envs = sizes(count)
        config = training_config(num_envs, NUM_STEPS, num_updates)
        algorithm = reinforce.make_algorithm(config)
        keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(num_seeds))
        steps = num_seeds * config.num_updates * config.steps_per_update
        programs = {"sharded": sharding.distribute(algorithm, sharding.make_mesh(mesh_seeds, mesh_envs))}
        if count == 1:
            programs["unsharded"] = algos.over_seeds(algos.train_fn(algorithm))
        for program, train in programs.items():
            timing = measure(train, keys, repeats)
            rows.append({"devices": count, "layout": layout, "program": program, "mesh": [mesh_seeds, mesh_envs],
                         "num_seeds": num_seeds, "num_envs": num_envs, "env_steps": steps,
                         **timing, "steps_per_s": steps / timing["run_s"]})
    return {"rows": rows}


def run_worker(devices: int, num_updates: int, repeats: int) -> list[dict]:
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    env = dict(os.environ, XLA_FLAGS=flags)
    cmd = [sys.executable, "-m", "benchmarks.sharding", "--worker", "--num-updates", str(num_updates), "--repeats", str(repeats)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200, cwd=Path(__file__).parents[1])
    if done.returncode:
        raise RuntimeError(f"worker on {devices} devices failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["rows"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer updates (a smoke run)")
    parser.add_argument("--num-updates", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per program (best one counts)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    compile_cache.enable()  # RLPG_COMPILE_CACHE=off for cold compile columns
    num_updates = args.num_updates or NUM_UPDATES[args.quick]
    if args.worker:
        print(json.dumps(worker(num_updates, args.repeats)))
        return

    device = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}"
    header = f"rlpg {rlpg.__version__}, jax {jax.__version__}, {device} ({os.cpu_count()} cores), {platform.machine()}"
    print(header, flush=True)
    load_before = os.getloadavg()[0]
    rows = [row for d in DEVICE_COUNTS for row in run_worker(d, num_updates, args.repeats)]
    load = f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    reference = {r["layout"]: r["steps_per_s"] for r in rows if r["program"] == "unsharded"}
    lines = [
        "| devices | layout | mesh (seeds × envs) | seeds × envs per run | env-steps/s | vs unsharded | compile s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        r["vs_unsharded"] = r["steps_per_s"] / reference[r["layout"]]
        mesh = "none (jit of over_seeds)" if r["program"] == "unsharded" else f"{r['mesh'][0]} × {r['mesh'][1]}"
        lines.append(f"| {r['devices']} | {r['layout']} | {mesh} | {r['num_seeds']} × {r['num_envs']} | "
                     f"{r['steps_per_s']:,.0f} | {r['vs_unsharded']:.2f} | {r['compile_s']:.1f} |")
    table = "\n".join(lines)
    print(table, flush=True)
    print(load, flush=True)

    platform_name = jax.devices()[0].platform
    RESULTS.mkdir(exist_ok=True)
    result = {"header": header, "jax": jax.__version__, "quick": args.quick, "num_updates": num_updates,
              "num_steps": NUM_STEPS, "repeats": args.repeats, "load": load, "rows": rows}
    (RESULTS / f"sharding-{platform_name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"sharding-{platform_name}.md").write_text(
        f"# Sharded REINFORCE throughput ({platform_name})\n\n{header}; `python -m benchmarks.sharding"
        f"{' --quick' if args.quick else ''}`.\n\nCartPole-v1, {NUM_STEPS} steps per update, {num_updates} updates, "
        f"best of {args.repeats} runs after compilation. Each device count runs in its own process with "
        "`XLA_FLAGS=--xla_force_host_platform_device_count=D`. \"seeds\": 4 seeds of 16 envs, split over the "
        "devices (shard_map, each device `lax.map`s its seeds). \"envs\": one seed of 64 envs, its env batch "
        "split over the devices (gradient means all-reduced by XLA). \"vs unsharded\": throughput over the "
        "plain `jax.jit(over_seeds(train))` of the same layout on one device, measured in the same run.\n\n"
        "**Forced host devices share the same CPU cores** (this machine: 2): each device runs on its own "
        "thread, so any gain is bounded by the cores, not by the device count. These numbers measure the "
        "overhead of the sharded programs (collectives, per-device dispatch) and at most the cores' "
        "parallelism, not a multi-device speed-up, which needs real devices (GPUs, hosts). Other jobs shared the "
        f"machine during this run ({load}); the 1 × 1 rows, nearly the unsharded program, show the noise level.\n\n" + table + "\n"
    )


if __name__ == "__main__":
    main()
