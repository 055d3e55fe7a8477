"""Throughput of rlpg on gymnax CartPole-v1 against the env-only limit and a PyTorch loop.

    python -m benchmarks.throughput            # full table (a few minutes on 2 CPU cores)
    python -m benchmarks.throughput --quick    # smaller sizes, for a smoke run
    python -m benchmarks.throughput --grid     # and num_envs x vmapped seeds up to 4096 x 64 (benchmarks/gpu.sh)
    python -m benchmarks.throughput --tiny     # seconds on a CPU: the smallest sizes, no solve, no peer

Prints a table and writes benchmarks/results/throughput-<platform>.json and .md. Every figure
is env-steps per second of wall time after compilation (compile seconds reported apart),
measured in this one process so that ratios are comparable on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import rlpg
from benchmarks import run_in_new_process
from experiments import train
from rlpg import algos, compile_cache, envs, policies, rollout
from rlpg.algos import reinforce

ENV_ID = "CartPole-v1"
RESULTS = Path(__file__).parent / "results"
TORCH_PYTHON = Path("/tmp/torchref/bin/python")
PEER_SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "peers" / "torch_reinforce.py"
# Cold compile of the solve's programs (init + a 5-update chunk, 5 seeds, then one program over the seeds)
# before issue 20, commit d9d4916, on that session's machine. Machines differ in speed: to compare code, run both commits on one machine.
RECORDED_COMPILE_S = 6.1


def timed(fn, *args):
    """(compile seconds, run seconds, output) of a jitted fn: compile once, run once."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))  # warm the buffers
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return compile_s, time.perf_counter() - t0, out


def env_only(num_envs: int, num_steps: int) -> dict:
    """Raw env steps/s with a trivial deterministic policy: the ceiling for any training loop."""
    env, params = envs.make(ENV_ID)

    def run(key):
        batch = rollout.reset(key, env, params, num_envs)

        def body(batch, k):
            action = (batch.obs[:, 2] > 0).astype(jnp.int32)
            batch, reward, *_ = rollout.step(k, env, params, batch, action)
            return batch, reward.sum()

        return jax.lax.scan(body, batch, jax.random.split(key, num_steps))[1].sum()

    c, r, _ = timed(run, jax.random.PRNGKey(0))
    return {"compile_s": c, "run_s": r, "steps_per_s": num_envs * num_steps / r}


def rollout_only(num_envs: int, num_steps: int) -> dict:
    """rlpg.rollout with a 64-64 MLP categorical policy, sampling and log-probs, no update."""
    env, params = envs.make(ENV_ID)
    policy = policies.make_policy(env, params, (64, 64))
    theta = policy.init(jax.random.PRNGKey(0))

    def run(key):
        batch = rollout.reset(key, env, params, num_envs)
        _, traj = rollout.rollout(key, policy, theta, env, params, batch, num_steps)
        return traj.reward.sum()

    c, r, _ = timed(run, jax.random.PRNGKey(0))
    return {"compile_s": c, "run_s": r, "steps_per_s": num_envs * num_steps / r}


def training_config(num_envs: int, num_steps: int, num_updates: int) -> reinforce.Config:
    """The default REINFORCE config at these sizes, validated."""
    return reinforce.Config(num_envs=num_envs, num_steps=num_steps, total_timesteps=num_envs * num_steps * num_updates).validate()


def training(num_envs: int, num_steps: int, num_updates: int, num_seeds: int = 1, hparams=None) -> dict:
    """Full REINFORCE training (rollout, returns, loss, Adam step), seeds vmapped."""
    config = training_config(num_envs, num_steps, num_updates)
    train = algos.over_seeds(reinforce.make_train(config), vectorize=True)
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(num_seeds))
    c, r, _ = timed(train, keys, hparams) if hparams is not None else timed(train, keys)
    steps = config.num_updates * config.steps_per_update * num_seeds
    return {"compile_s": c, "run_s": r, "steps_per_s": steps / r}


def mlp_flops(sizes: list[int]) -> int:
    """Forward FLOPs of one sample through dense layers of `sizes` (multiply-adds count 2)."""
    return 2 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def reinforce_flops_per_step(obs_dim: int, num_actions: int, hidden=(64, 64)) -> int:
    """FLOPs per env step of REINFORCE with a value baseline: the rollout's policy forward, the
    loss's policy and value forward + backward (backward ≈ 2 × forward), V(s') forward."""
    policy = mlp_flops([obs_dim, *hidden, num_actions])
    value = mlp_flops([obs_dim, *hidden, 1])
    return policy + 3 * policy + 3 * value + value


def dense_roofline(batch: int = 16_384, obs_dim: int = 4, hidden=(64, 64), repeats: int = 20) -> dict:
    """FLOP/s this machine reaches on the training's own arithmetic: forward + backward of the
    64-64 MLP on a large batch (no env, no control flow), `repeats` times in one program."""
    policy = policies.mlp_categorical((obs_dim,), 2, hidden)
    params = policy.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (batch, obs_dim))

    def run(params, obs):
        loss = lambda p: jnp.sum(jax.nn.log_softmax(policy.apply(p, obs))[:, 0])  # noqa: E731

        def body(p, _):
            g = jax.grad(loss)(p)
            return jax.tree.map(lambda a, b: a - 1e-6 * b, p, g), None

        return jax.lax.scan(body, params, None, length=repeats)[0]

    c, r, _ = timed(run, params, obs)
    flops = 3 * mlp_flops([obs_dim, *hidden, 2]) * batch * repeats
    return {"compile_s": c, "run_s": r, "gflops": flops / r / 1e9}


def solve_time(num_seeds: int = 5, chunk_updates: int = 5, threshold: float = 475.0, eval_episodes: int = 16) -> dict:
    """Wall seconds, compile included, for the default REINFORCE config to solve CartPole-v1 with
    `num_seeds` seeds, by gymnasium's criterion (mean return >= 475): training runs in chunks of
    `chunk_updates` updates (one compiled program) and the clock stops after the first chunk whose
    last update's mean episode return, median over seeds, reaches `threshold`. Then, off the
    clock, each seed's greedy policy plays `eval_episodes` episodes. The run's full length
    (500k steps per seed) is the limit. `compile_s` = `trace_lower_s` (JAX tracing both programs,
    init and chunk, to StableHLO) + `xla_s` (XLA compiling them, or loading them from the
    persistent cache when it holds them). The seeds run as `rlpg-train` runs them on one device:
    one-seed programs called seed by seed (`experiments.train.seed_by_seed`)."""
    config = reinforce.Config()
    algorithm = reinforce.make_algorithm(config)
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(num_seeds))
    t0 = time.perf_counter()
    init = jax.jit(algorithm.init).lower(*train.one_seed((keys,)))
    chunk = jax.jit(lambda s: algos.run_updates(algorithm.update, s, chunk_updates)).lower(init.out_info)
    t_lowered = time.perf_counter()
    init, chunk = train.seed_by_seed(init.compile()), train.seed_by_seed(chunk.compile())
    compile_s = time.perf_counter() - t0
    state = init(keys)
    for done in range(chunk_updates, config.num_updates + 1, chunk_updates):
        state, metrics = chunk(state)
        training_returns = np.asarray(metrics["episode_return"])[:, -1]
        if np.median(training_returns) >= threshold:
            break
    wall_s = time.perf_counter() - t0
    evaluate = algos.make_evaluate(algorithm, eval_episodes)
    greedy = np.asarray(evaluate(keys, state.params["policy"])).mean(axis=1)
    return {"wall_s": wall_s, "compile_s": compile_s, "trace_lower_s": t_lowered - t0, "xla_s": compile_s - (t_lowered - t0),
            "env_steps_per_seed": done * config.steps_per_update,
            "training_returns": training_returns.tolist(), "median_return": float(np.median(greedy)), "returns": greedy.tolist()}


def solve_in_new_process(cache_dir: str) -> dict:
    """`solve_time()` in a new Python process whose persistent compilation cache is `cache_dir`:
    what a user waits for from a shell, cold (empty folder) or warm (a previous run filled it).
    Adds `process_s`, the process's wall time, imports and evaluation included."""
    t0 = time.perf_counter()
    stdout = run_in_new_process(["-m", "benchmarks.throughput", "--solve-worker", "--compile-cache", cache_dir])
    return {**json.loads(stdout.strip().splitlines()[-1]), "process_s": time.perf_counter() - t0}


def torch_peer(seconds: float) -> dict | None:
    """The PyTorch + gymnasium REINFORCE loop from ../shared/peers, in its own venv."""
    if not (TORCH_PYTHON.exists() and PEER_SCRIPT.exists()):
        return None
    out = subprocess.run([str(TORCH_PYTHON), str(PEER_SCRIPT), str(seconds)], capture_output=True, text=True, timeout=seconds + 120)
    match = re.search(r"= ([\d,]+) env-steps/s", out.stdout)
    return {"steps_per_s": float(match.group(1).replace(",", "")), "line": out.stdout.strip()} if match else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--tiny", action="store_true", help="the smallest sizes (repeated, so the persistent cache compiles "
                        "each program once), no lr grid, no solve, no PyTorch peer: seconds on a CPU")
    parser.add_argument("--grid", action="store_true", help="also REINFORCE training over num_envs x vmapped seeds, "
                        "up to 4096 x 64 (for an accelerator)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the result files")
    parser.add_argument("--torch-seconds", type=float, default=20.0)
    parser.add_argument("--compile-cache", default=None, help="persistent compilation cache folder (default: a fresh "
                        "temporary one, so every compile figure is cold; 'off': none)")
    parser.add_argument("--solve-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    rlpg.unroll_threefry_on_cpu()  # as experiments.train trains
    if args.solve_worker:
        compile_cache.enable(args.compile_cache)
        print(json.dumps(solve_time()))
        return
    with tempfile.TemporaryDirectory() as fresh:
        compile_cache.enable(args.compile_cache or fresh)
        run_tables(args)


def sizes(tiny: bool = False, quick: bool = False, grid: bool = False) -> dict:
    """Every REINFORCE training run's sizes in a mode (steps of 128 per env per update):
    `envs` [(num_envs, num_updates)] of the first table, `seeds` [(num_envs, num_updates, num_seeds)]
    of the seeds table (and the lr grid, 16 points, unless tiny), `grid` [(num_envs, num_updates,
    num_seeds)] with --grid. Env-only and rollout run `steps` [num_envs] steps at each env count.
    The default config normalizes by the other environments: at least 2 envs everywhere. With
    --grid (an accelerator, where a step of few envs costs kernel-launch latency, not arithmetic)
    a measurement runs at most 2**14 steps one after another."""
    budget = 2**10 if tiny else 2**18 if quick else 2**21  # env steps per measurement
    env_counts = [4] if tiny else [2, 16, 256] if quick else [2, 16, 256, 1024, 4096]
    steps = {n: max(128, min(budget // n, 2**14 if grid else budget)) for n in env_counts}  # one env's, per measurement
    seed_envs, seed_updates = (4, 2) if tiny else (16, 32)  # per seed, in the seeds table
    grid_cells = [(4, s) for s in (1, 2)] if tiny else [(n, s) for n in (256, 1024, 4096) for s in (1, 8, 64)]
    return {
        "envs": [(n, max(2, steps[n] // 128)) for n in env_counts],
        "steps": steps,
        "seeds": [(seed_envs, seed_updates, s) for s in ([1, 2] if tiny else [1, 4] if quick else [1, 4, 16, 64])],
        "lr_grid": None if tiny else (seed_envs, seed_updates, 16),
        "grid": [(n, min(64, max(2, (2**10 if tiny else 2**27) // (n * s * 128))), s) for n, s in grid_cells] if grid else [],
    }


def run_tables(args) -> None:
    """Every table; compile figures are cold unless `--compile-cache` names a filled folder."""

    plan = sizes(args.tiny, args.quick, args.grid)
    device = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}"
    print(f"rlpg {rlpg.__version__}, jax {jax.__version__}, {device}, {platform.processor() or platform.machine()}", flush=True)
    rows, result = [], {"device": device, "jax": jax.__version__, "quick": args.quick, "tiny": args.tiny}

    result["envs"] = []
    for n, updates in plan["envs"]:
        limit = env_only(n, plan["steps"][n])
        roll = rollout_only(n, plan["steps"][n])
        train = training(n, 128, updates)
        entry = {"num_envs": n, "env_only": limit, "rollout": roll, "train": train}
        result["envs"].append(entry)
        rows.append((f"{n} envs", f"{limit['steps_per_s']:,.0f}", f"{roll['steps_per_s']:,.0f} ({roll['steps_per_s'] / limit['steps_per_s']:.0%})",
                     f"{train['steps_per_s']:,.0f} ({train['steps_per_s'] / limit['steps_per_s']:.0%})", f"{train['compile_s']:.1f}"))
        print(" | ".join(rows[-1]), flush=True)

    result["seeds"] = []
    base = None
    for n, updates, s in plan["seeds"]:
        t = training(n, 128, updates, num_seeds=s)
        base = base or t["run_s"]
        result["seeds"].append({"num_seeds": s, **t, "cost_vs_one_seed": t["run_s"] / base})
        print(f"{s} vmapped seeds ({n} envs x 128 steps x {updates} updates): {t['run_s']:.2f}s = "
              f"{t['run_s'] / base:.1f}x one seed, {t['steps_per_s']:,.0f} env-steps/s, compile {t['compile_s']:.1f}s", flush=True)

    if plan["lr_grid"]:
        n, updates, points = plan["lr_grid"]
        t = training(n, 128, updates, num_seeds=points, hparams={"lr": jnp.logspace(-4, -1, points)})
        result["lr_grid"] = {"points": points, **t}
        print(f"lr grid of {points} in one program: {t['run_s']:.2f}s, {t['steps_per_s']:,.0f} env-steps/s, compile {t['compile_s']:.1f}s", flush=True)

    result["grid"] = []
    for n, updates, s in plan["grid"]:  # the accelerator's table: up to 4096 envs x 64 seeds = 262,144 CartPoles at once
        t = training(n, 128, updates, num_seeds=s)
        result["grid"].append({"num_envs": n, "num_seeds": s, "num_updates": updates, **t})
        print(f"grid: {n} envs x {s} seeds x 128 steps x {updates} updates: {t['steps_per_s']:,.0f} env-steps/s, "
              f"compile {t['compile_s']:.1f}s", flush=True)

    solve = warm = None
    if not args.tiny:
        with tempfile.TemporaryDirectory() as cache:  # a new process each: cold (empty cache), then warm
            solve, warm = solve_in_new_process(cache), solve_in_new_process(cache)
        result["solve"], result["solve_warm"] = solve, warm
        result["solve_compile_vs_recorded"] = solve["compile_s"] / RECORDED_COMPILE_S
        for name, s in (("cold", solve), ("warm", warm)):
            print(f"solve CartPole-v1 (default config, 5 seeds, compile included), {name} compilation cache: {s['wall_s']:.1f}s wall, "
                  f"compile {s['compile_s']:.2f}s (tracing and lowering {s['trace_lower_s']:.2f}s, XLA {s['xla_s']:.2f}s), "
                  f"{s['env_steps_per_seed']:,} env steps per seed, training returns "
                  f"{np.round(s['training_returns'], 1).tolist()}, then greedy {np.round(s['returns'], 1).tolist()}; "
                  f"the whole process {s['process_s']:.1f}s", flush=True)
        print(f"cold compile {solve['compile_s']:.2f}s = {result['solve_compile_vs_recorded']:.2f}x the {RECORDED_COMPILE_S}s recorded "
              f"before issue 20 (on that day's machine); warm compile {warm['compile_s'] / solve['compile_s']:.0%} of cold", flush=True)

    roof = dense_roofline(batch=1024, repeats=2) if args.tiny else dense_roofline()
    per_step = reinforce_flops_per_step(4, 2)
    best_train = max(e["train"]["steps_per_s"] for e in result["envs"])
    result["roofline"] = {**roof, "flops_per_env_step": per_step, "max_train_steps_per_s": roof["gflops"] * 1e9 / per_step,
                          "best_train_fraction": best_train * per_step / (roof["gflops"] * 1e9)}
    print(f"roofline: the 64-64 MLP's forward + backward reaches {roof['gflops']:.1f} GFLOP/s here; REINFORCE needs "
          f"{per_step:,} FLOP per env step, so at most {result['roofline']['max_train_steps_per_s']:,.0f} env-steps/s; "
          f"the best training run reaches {result['roofline']['best_train_fraction']:.0%} of that", flush=True)

    peer = None if args.tiny else torch_peer(args.torch_seconds)
    result["torch_peer"] = peer
    if peer:
        best_train = max(e["train"]["steps_per_s"] for e in result["envs"])
        result["ratio_train_vs_torch"] = best_train / peer["steps_per_s"]
        print(f"PyTorch loop: {peer['steps_per_s']:,.0f} env-steps/s; rlpg training best {best_train:,.0f} = "
              f"{result['ratio_train_vs_torch']:,.0f}x", flush=True)
    else:
        print("PyTorch peer not run: create /tmp/torchref as ../shared/peers/README.md says.", flush=True)

    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / f"throughput-{jax.devices()[0].platform}{'-quick' if args.quick else ''}{'-tiny' if args.tiny else ''}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# rlpg throughput on {device} (jax {jax.__version__})", "",
             "| envs | env-only steps/s | rollout steps/s (of limit) | REINFORCE training steps/s (of limit) | train compile s |",
             "| --- | --- | --- | --- | --- |", *("| " + " | ".join(r) + " |" for r in rows), ""]
    lines += ["| vmapped seeds | run s | cost vs one seed | env-steps/s |", "| --- | --- | --- | --- |"]
    lines += [f"| {e['num_seeds']} | {e['run_s']:.2f} | {e['cost_vs_one_seed']:.1f}x | {e['steps_per_s']:,.0f} |" for e in result["seeds"]]
    if result["grid"]:
        lines += ["", "| envs × vmapped seeds | updates of 128 steps | REINFORCE training env-steps/s | compile s |", "| --- | --- | --- | --- |"]
        lines += [f"| {e['num_envs']} × {e['num_seeds']} | {e['num_updates']} | {e['steps_per_s']:,.0f} | {e['compile_s']:.1f} |"
                  for e in result["grid"]]
    if solve:
        lines += ["", f"Solve CartPole-v1 (default config, 5 seeds seed by seed as `rlpg-train` on one device, trained in chunks of 5 updates; solved when the median over "
                  f"seeds of the mean training episode return reaches 475), compile included, each in a new process: cold "
                  f"compilation cache {solve['wall_s']:.1f} s (compile {solve['compile_s']:.2f} s = "
                  f"{result['solve_compile_vs_recorded']:.2f}x the {RECORDED_COMPILE_S} s recorded before issue 20 on that day's machine), warm "
                  f"{warm['wall_s']:.1f} s (compile {warm['compile_s']:.2f} s, {warm['compile_s'] / solve['compile_s']:.0%} of cold); "
                  f"of the compile, JAX's tracing and lowering to StableHLO took {solve['trace_lower_s']:.2f} s cold and "
                  f"{warm['trace_lower_s']:.2f} s warm (the cache cannot skip it: its key is the lowered program), XLA "
                  f"{solve['xla_s']:.2f} s cold and {warm['xla_s']:.2f} s warm (loading both programs from the cache); "
                  f"whole process (imports, evaluation) {solve['process_s']:.1f} s cold, {warm['process_s']:.1f} s warm. After "
                  f"{solve['env_steps_per_seed']:,} env steps per seed; training returns "
                  f"{np.round(solve['training_returns'], 1).tolist()}, then greedy evaluation (16 episodes, off the clock) "
                  f"{np.round(solve['returns'], 1).tolist()}."]
    roof = result["roofline"]
    lines += ["", f"Roofline: forward + backward of the 64-64 MLP on a large batch reaches {roof['gflops']:.1f} GFLOP/s on this "
              f"machine; REINFORCE with a value baseline needs {roof['flops_per_env_step']:,} FLOP per env step (rollout "
              f"forward, policy and value forward + backward, V(s') forward), so at that rate of XLA's dense kernels it cannot exceed "
              f"{roof['max_train_steps_per_s']:,.0f} env-steps/s here; the best training run reaches "
              f"{roof['best_train_fraction']:.0%} of that.", ""]
    if peer:
        lines += [f"PyTorch + gymnasium REINFORCE loop: {peer['steps_per_s']:,.0f} env-steps/s; "
                  f"rlpg's best training throughput is {result['ratio_train_vs_torch']:,.0f}x that. Not the same "
                  "work: the loop people write (one env, one episode per update, a 128-unit ReLU policy, no "
                  "baseline) against rlpg's default REINFORCE (64-64 policy and value networks) at its best "
                  "batch of envs above.", ""]
    stem.with_suffix(".md").write_text("\n".join(lines))
    print(f"wrote {stem}.json and .md")


if __name__ == "__main__":
    sys.exit(main())
