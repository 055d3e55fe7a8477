"""Train a policy-gradient (or, for contrast, DQN) agent on a gymnax environment, many seeds at once.

    python -m experiments.train                          # REINFORCE on CartPole-v1, 5 seeds
    python -m experiments.train --env Acrobot-v1 --num-seeds 3 --out runs/acrobot
    python -m experiments.train --algo dqn --log-every 500      # DQN (replay + target network)

Seed i of a run (i = 0 .. num_seeds − 1) uses PRNG seed `seed + i`, so `--seed 3 --num-seeds 1`
reproduces the fourth seed of `--seed 0 --num-seeds 5`, bit for bit (unless --vectorize-seeds).
On one device each program is compiled for one seed and called seed by seed (`seed_by_seed`,
the numbers of `algos.over_seeds`' loop over the seeds in one program, compiled faster); with
--vectorize-seeds or on a mesh, one program runs all seeds.
The Config's numeric fields (lr, gamma, ...) enter the programs as arguments
(`algos.numeric_hparams`): runs that differ only in them share compiled programs, and a run's
numbers on one device are the library's `algos.over_seeds(algos.train_fn(algorithm))(keys,
algos.numeric_hparams(config, num_seeds))`, bit for bit.
Writes config.json, metrics.csv, summary.json, learning_curve.png and checkpoint/ into --out.

Flags: the script's own (`ScriptArgs`) and one per field of the Configs of `rlpg.algos.ALGOS`
(`config_flags`: type and choices from the field's annotation, help its docstring; unset, the
algorithm's own default), so a newly registered algorithm brings its flags along.

Many devices (rlpg.sharding): `--devices all` spreads the seeds over every device, still bit for
bit (against one device of the same backend); `--mesh-envs E` gives each run E devices that split its environments (gradients averaged
across them, equal to one device up to float rounding), and the remaining factor splits the
seeds. num_seeds must be divisible by (devices / E), num_envs by E.

    python -m experiments.train --devices all --num-seeds 8                 # seeds over all devices
    python -m experiments.train --devices all --mesh-envs 2 --num-envs 64 --num-seeds 8   # 2 devices per run

Multi-host: start the same command in every process with `--distributed`, which calls
`jax.distributed.initialize()` (cluster auto-detection: SLURM, Open MPI, Kubernetes, TPU pods)
before anything else; `--devices all` then means the devices of all hosts. docs/multihost.md
has the details and a manual launch.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from rlpg import algos, compile_cache, experiment, sharding, tracking, unroll_threefry_on_cpu
from rlpg._checks import check_seed
from rlpg.algos import common


@dataclasses.dataclass
class ScriptArgs:
    """Flags left at None take the algorithm's default (its `Config`)."""

    algo: str = "reinforce"  # `make_args` narrows it to the names of the registered algorithms
    """training algorithm"""
    env: str | None = None  # sets the Config's env_id (None: the algorithm's, e.g. APG's Pendulum-v1); `make_args` gives it env_id's docstring as help
    num_seeds: int = 5
    """independent runs (seed by seed on one device, in one program with --vectorize-seeds or on a mesh)"""
    seed: int = 0
    """PRNG seed of the first run; run i uses seed + i"""
    vectorize_seeds: bool = False
    """vmap the seeds (faster on accelerators) instead of looping over them in the program
    (the default: seed i equals the same seed run alone, bit for bit)"""
    devices: Literal["one", "all"] = "one"
    """train on the default device, or on all devices (of all hosts, with --distributed)"""
    mesh_envs: int = 1
    """with --devices all: devices that split each run's environments; the rest split the seeds"""
    distributed: bool = False
    """multi-host: call jax.distributed.initialize() first (see docs/multihost.md)"""
    log_every: int = 10
    """print a progress line every this many updates (0: never)"""
    eval_episodes: int = 32
    """episodes per seed in the final evaluation"""
    greedy_eval: bool = True
    """evaluate the distribution's mode (else sample actions; DQN: greedy only)"""
    out: Path | None = None
    """run folder (default: runs/<algo>-<env>-<time>)"""
    overwrite: bool = False
    """replace an existing run folder"""
    checkpoint_every: int = 0
    """train in chunks of this many updates, saving a resume point (complete training state and
    metrics) after each, and on SIGINT/SIGTERM (0: nothing saved until the end; chunks of at most
    --log-every updates, dividing the run, so progress lines come while it trains)"""
    resume: Path | None = None
    """continue the interrupted run in this folder from its newest intact resume point, with its
    saved flags; only --log-every, --checkpoint-every, --track and --compile-cache may be given
    with it (they change what is printed, saved and cached, not what is computed)"""
    track: Literal["none", "tensorboard", "wandb"] = "none"
    """log every seed's per-update metrics while training: TensorBoard event files in <out>/tensorboard
    (pip install "rlpg[tensorboard]") or Weights & Biases (pip install "rlpg[wandb]"; offline without a key)"""
    compile_cache: str | None = None
    """folder of JAX's persistent compilation cache, shared by runs on this machine (default:
    $RLPG_COMPILE_CACHE, else ~/.cache/rlpg/jax); "off" compiles everything afresh"""


# Flags of the script itself; every other flag is a field of the algorithm's Config.
SCRIPT_FLAGS = tuple(f.name for f in dataclasses.fields(ScriptArgs))
# Config fields set by a script flag: {field: flag}.
SET_BY_SCRIPT_FLAG = {"env_id": "env", "log_every": "log_every"}


def config_flags(algorithms: dict) -> list[tuple]:
    """One `(name, type, field)` for `dataclasses.make_dataclass` per field of the Configs of
    `algorithms` ({name: module}, e.g. `rlpg.algos.ALGOS`), the union in registry order, less
    `SET_BY_SCRIPT_FLAG`: type `T | None` (T the field's annotation, e.g. its `Literal` choices),
    default None (the algorithm's own default), help its docstring, prefixed by the algorithms it
    applies to unless all have it alike ("PPO: ...", one docstring per algorithm where they differ).
    A field annotated differently by two algorithms is a TypeError naming it."""
    types, docs = {}, {}  # {field: (type, first algorithm with it)}, {field: {docstring: [algorithms]}}
    for algo, module in algorithms.items():
        config_types, config_docs = common.field_types(module.Config), common.field_docs(module.Config)
        for field in dataclasses.fields(module.Config):
            name, kind = field.name, config_types[field.name]
            if name in SET_BY_SCRIPT_FLAG:
                continue
            first_kind, first_algo = types.setdefault(name, (kind, algo))
            if kind != first_kind:
                raise TypeError(f"Config field `{name}` is {kind} in {algo} but {first_kind} in {first_algo}.")
            docs.setdefault(name, {}).setdefault(config_docs.get(name, ""), []).append(algo.upper())

    def help_text(by_doc: dict) -> str:
        (doc, names), *others = by_doc.items()
        if not others and len(names) == len(algorithms):
            return doc
        return "; ".join(f"{', '.join(names)}: {doc}" for doc, names in by_doc.items())

    return [
        (name, Annotated[kind | None, tyro.conf.arg(help=help_text(docs[name]))], dataclasses.field(default=None))
        for name, (kind, _) in types.items()
    ]


def make_args(algorithms: dict) -> type:
    """The command line's dataclass: `ScriptArgs`, `--algo` one of `algorithms`' names, `--env`
    with the help of `BaseConfig.env_id` (the field it sets), and `config_flags(algorithms)`."""
    algo = Annotated[Literal[tuple(algorithms)], tyro.conf.arg(help=common.field_docs(ScriptArgs)["algo"])]
    env = Annotated[str | None, tyro.conf.arg(help=common.field_docs(common.BaseConfig)["env_id"])]
    script_flags = [("algo", algo, dataclasses.field(default=ScriptArgs.algo)), ("env", env, dataclasses.field(default=ScriptArgs.env))]
    return dataclasses.make_dataclass(
        "Args", [*script_flags, *config_flags(algorithms)],
        bases=(ScriptArgs,), namespace={"__doc__": ScriptArgs.__doc__, "__module__": __name__},
    )


Args = make_args(algos.ALGOS)


def make_config(args: Args):
    """(algorithm module, its validated Config) from the command-line arguments.

    A flag the chosen algorithm has no field for is an error, not silently ignored.
    """
    module = experiment.algo_module(args.algo)
    fields = {f.name for f in dataclasses.fields(module.Config)}
    values = {field: getattr(args, flag) for field, flag in SET_BY_SCRIPT_FLAG.items() if getattr(args, flag) is not None}
    for flag in dataclasses.fields(args):
        value = getattr(args, flag.name)
        if flag.name in SCRIPT_FLAGS or value is None:
            continue
        if flag.name not in fields:
            raise ValueError(f"`--{flag.name.replace('_', '-')}` does not apply to --algo {args.algo}.")
        values[flag.name] = tuple(value) if isinstance(value, (list, tuple)) else value
    return module, module.Config(**values).validate()


def make_mesh(args: Args, config):
    """The [seeds, envs] device mesh of --devices all (None for one device), checked against the batch."""
    if args.devices == "one":
        if args.mesh_envs != 1:
            raise ValueError(f"`--mesh-envs` ({args.mesh_envs}) needs `--devices all`.")
        return None
    count = jax.device_count()
    if args.mesh_envs < 1 or count % args.mesh_envs:
        raise ValueError(f"`--mesh-envs` must divide the number of devices ({count}); got {args.mesh_envs}.")
    mesh = sharding.make_mesh(seeds=count // args.mesh_envs, envs=args.mesh_envs)
    sharding.check_divisible(mesh, num_seeds=args.num_seeds, num_envs=config.num_envs)
    return mesh


class Setup(NamedTuple):
    """A run `prepare` checked and set up, ready to train: its (saved) flags and folder, the
    algorithm module and validated Config, the device mesh (None: one device), the saved config
    and its fingerprint, and the resume point to start from (None: update 0)."""

    args: Args
    out: Path
    module: Any
    config: common.BaseConfig
    mesh: jax.sharding.Mesh | None
    saved_config: dict
    fingerprint: dict
    found: tuple[Path, dict] | None


# What `prepare` raises for a command line it refuses (a flag's value, a folder, a damaged or
# finished run, a missing extra): `main` prints it as one line instead of a traceback.
REFUSALS = (ValueError, OSError, ImportError)


def run(args: Args, given: list[str] | None = None) -> dict:
    """Train in chunks (saving a resume point after each), evaluate, write the run folder;
    returns the summary. With `args.resume`, continue the run saved in that folder instead:
    from its newest intact resume point, running only the remaining updates. `given`: the
    flags spelled out on the command line (`given_flags`), so that a safe flag given at its
    default value with --resume still applies; None: the flags that differ from their defaults."""
    with compile_cache.count_programs() as programs:
        return train(prepare(args, given), programs)


def prepare(args: Args, given: list[str] | None = None) -> Setup:
    """Check `args` and set the run up before anything compiles: the resumed run's saved flags,
    the Config, the mesh, the run folder (created, config.json written) and its intact resume
    point. Raises one of `REFUSALS`, naming the flag or file, for anything it refuses."""
    resuming = args.resume is not None
    if resuming:
        args, out = resume_args(args, given)
    if args.num_seeds < 1:
        raise ValueError(f"`num_seeds` must be >= 1; got {args.num_seeds}.")
    check_seed("seed", args.seed, args.num_seeds)  # run i uses PRNG seed seed + i, a 32-bit int
    if args.eval_episodes < 1:
        raise ValueError(f"`eval_episodes` must be >= 1; got {args.eval_episodes}.")
    if args.algo in experiment.GREEDY_ONLY_ALGOS and not args.greedy_eval:
        raise ValueError(f"`greedy_eval` must be True for --algo {args.algo}: sampling would draw from softmax(Q), neither "
                         "DQN's ε-greedy behaviour nor a policy it learned; got False.")
    if args.checkpoint_every < 0:
        raise ValueError(f"`checkpoint_every` must be >= 0 (0: once, at the end); got {args.checkpoint_every}.")
    module, config = make_config(args)
    mesh = make_mesh(args, config)
    if args.distributed and (args.checkpoint_every or resuming):
        raise ValueError("`--checkpoint-every` and `--resume` are single-host for now; drop them with `--distributed`.")
    tracking.check_available(args.track)  # before --overwrite removes anything
    if not resuming:
        out = args.out or Path("runs") / f"{args.algo}-{config.env_id}-{time.strftime('%Y%m%d-%H%M%S')}"
        out = experiment.prepare_run_dir(out, args.overwrite)
        experiment.write_json(out / experiment.CONFIG_FILE, {
            "algo": args.algo, "num_seeds": args.num_seeds, "seed": args.seed,
            "config": dataclasses.asdict(config), "args": dataclasses.asdict(args),
        })
    saved_config = experiment.load_config(out)
    fingerprint = experiment.config_fingerprint(saved_config)
    # Checked before anything compiles: a damaged point falls back to the previous one (with a
    # warning), no intact point or a changed config.json stops here.
    found = experiment.intact_resume_point(out, fingerprint) if resuming else None
    return Setup(args, out, module, config, mesh, saved_config, fingerprint, found)


def train(setup: Setup, programs: collections.Counter) -> dict:
    """Train, evaluate and write the run `prepare` set up (see `run`); returns the summary, whose
    program counts are those of `programs` (`compile_cache.count_programs`, opened before `prepare`:
    checking a Config against its env runs small programs)."""
    args, out, module, config, mesh, saved_config, fingerprint, found = setup
    resuming = args.resume is not None
    track = args.track if jax.process_index() == 0 else "none"  # multi-host: the first process logs
    tracker = tracking.make_tracker(track, out, args.num_seeds, saved_config)
    devices = f" on a {dict(mesh.shape)} device mesh" if mesh is not None else ""
    print(f"{args.algo} on {config.env_id}: {experiment.seeds_label(args.num_seeds)} x {config.num_updates} updates x "
          f"{config.steps_per_update} env steps{devices} -> {out}", flush=True)

    # Progress lines come from the host after each chunk: a program with an in-program callback
    # is never written to the persistent compilation cache.
    progress = experiment.ProgressPrinter(args.num_seeds, config.num_updates)
    algorithm = module.make_algorithm(config.replace(log_every=0))
    if mesh is not None and mesh.shape[sharding.ENVS] > 1:
        algorithm = sharding.shard_envs(algorithm, mesh)

    keys = jax.vmap(jax.random.PRNGKey)(args.seed + jnp.arange(args.num_seeds))
    hparams = algos.numeric_hparams(config, args.num_seeds)
    chunk = args.checkpoint_every or progress_chunk(algorithm.num_updates, args.log_every)

    t0 = time.perf_counter()
    state = jax.block_until_ready(compile_over_seeds(algorithm.init, (keys, hparams), mesh, args.vectorize_seeds)(keys, hparams))
    compile_s, train_s = time.perf_counter() - t0, 0.0
    metrics: dict[str, np.ndarray] = {}
    done = 0  # updates so far, the same for every seed
    if found is not None:
        point, manifest = found
        state, metrics = experiment.restore_resume_point(point, state, manifest)
        done = int(manifest["update"])
        print(f"resuming from {point}: update {done}/{algorithm.num_updates}, "
              f"{done * config.steps_per_update:,} env steps per seed done; "
              f"{algorithm.num_updates - done} updates left", flush=True)
    elif resuming:
        print(f"{out} has no resume point (stopped before its first one was saved): training from update 0", flush=True)
    start = done
    by_seed = runs_seed_by_seed(mesh, args.vectorize_seeds)
    if by_seed:  # carried seed by seed between chunks: restacking would copy the whole state (a replay buffer) each chunk
        state = unstack_seeds(state)
    compiled = {}  # chunk length -> executable (at most two lengths: `chunk` and the remainder)
    with StopOnSignal() as stop, tracker:
        while done < algorithm.num_updates:
            n = min(chunk, algorithm.num_updates - done)
            if n not in compiled:
                t0 = time.perf_counter()
                chunk_fn = functools.partial(algos.run_updates, algorithm.update, num_updates=n)
                compiled[n] = (jax.jit(chunk_fn).lower(state[0]).compile() if by_seed
                               else compile_over_seeds(chunk_fn, (state,), mesh, args.vectorize_seeds))
                compile_s += time.perf_counter() - t0
            if mesh is not None:  # a compiled program takes only the layout it was compiled for; on a
                # mesh XLA may lay a chunk's output state out otherwise (PPO's per-env return carry)
                state = jax.device_put(state, compiled[n].input_shardings[0][0])
            t0 = time.perf_counter()
            if by_seed:
                outputs = jax.block_until_ready([compiled[n](seed_state) for seed_state in state])
                new_state, new_metrics = [out[0] for out in outputs], stack_seeds([out[1] for out in outputs])
            else:
                new_state, new_metrics = jax.block_until_ready(compiled[n](state))
            train_s += time.perf_counter() - t0
            new_metrics = jax.device_get(sharding.gather(new_metrics))  # multi-host: every process gets all seeds
            check_finite(new_metrics, out)
            progress.report_chunk(new_metrics, args.log_every)
            tracker.log_chunk(new_metrics)
            state, done = new_state, done + n
            metrics = {k: np.concatenate([metrics[k], v], axis=1) if k in metrics else np.asarray(v)
                       for k, v in new_metrics.items()}
            if args.checkpoint_every or stop.signum is not None:
                experiment.save_resume_point(out, stack_seeds(state) if by_seed else state, metrics, fingerprint)
            if stop.signum is not None:
                print(f"stopped by signal {stop.signum} after update {done}; continue with "
                      f"`python -m experiments.train --resume {out}`", flush=True)
                raise SystemExit(128 + stop.signum)
    state = stack_seeds(state) if by_seed else sharding.gather(state)

    eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    t0 = time.perf_counter()
    evaluate = algos.evaluate_fn(algorithm, args.eval_episodes, args.greedy_eval)
    evaluate = compile_over_seeds(evaluate, (eval_keys, state.params["policy"]), mesh, args.vectorize_seeds)
    compile_s += time.perf_counter() - t0
    eval_returns = np.asarray(evaluate(eval_keys, state.params["policy"]))

    total_steps = config.num_updates * config.steps_per_update
    steps_this_run = (algorithm.num_updates - start) * config.steps_per_update
    summary = {
        "algo": args.algo,
        "env": config.env_id,
        "num_seeds": args.num_seeds,
        "env_steps_per_seed": total_steps,
        "eval_greedy": args.greedy_eval,
        "eval_return_mean": eval_returns.mean(axis=1).tolist(),
        "eval_return_std": eval_returns.std(axis=1).tolist(),
        "eval_return_median_over_seeds": float(np.median(eval_returns.mean(axis=1))),
        "compile_seconds": compile_s,
        "xla_programs": programs["built"],
        "xla_programs_from_cache": programs["loaded"],
        "train_seconds": train_s,
        "env_steps_per_second": steps_this_run * args.num_seeds / train_s if train_s else None,  # None: nothing left to train
        "resumed_from_update": start if resuming else None,
        "mesh": dict(mesh.shape) if mesh is not None else None,
    }
    experiment.write_metrics_csv(out / experiment.METRICS_FILE, metrics)
    experiment.plot_learning_curve(out / experiment.CURVE_FILE, metrics, f"{args.algo} on {config.env_id}")
    if resuming and (out / experiment.CHECKPOINT_DIR).exists():  # left by a finish that was cut short: the same params
        shutil.rmtree(out / experiment.CHECKPOINT_DIR)
    experiment.save_params(out / experiment.CHECKPOINT_DIR, jax.device_get(state.params))
    experiment.write_json(out / experiment.SUMMARY_FILE, summary)  # last: a run with summary.json has finished
    rate = f"{summary['env_steps_per_second']:,.0f} env-steps/s" if train_s else "no updates were left to train"
    if train_s and "continuation_steps" in metrics:  # REINFORCE finishing its window's episodes: stepped, not counted
        rate += f" of the windows (+{int(np.sum(metrics['continuation_steps'][:, start:])):,} steps finishing their episodes)"
    print(f"done: final {'greedy' if args.greedy_eval else 'stochastic'} evaluation return per seed "
          f"{np.round(summary['eval_return_mean'], 1).tolist()} (median {summary['eval_return_median_over_seeds']:.1f}); "
          f"compile {compile_s:.1f}s ({summary['xla_programs']} XLA programs, {summary['xla_programs_from_cache']} from the "
          f"compilation cache), "
          f"train {train_s:.1f}s, {rate}; "
          f"wrote {out}", flush=True)
    return summary


def compile_over_seeds(fn: Callable, inputs: tuple, mesh, vectorize: bool) -> Callable:
    """A per-seed `fn` over the seeds of `inputs` [S, ...], compiled: on one device (`mesh` None)
    without `vectorize`, one program for one seed called seed by seed (`seed_by_seed`); else one
    program over all seeds, vmapped or split over the mesh (`sharding.shard_seeds`)."""
    if runs_seed_by_seed(mesh, vectorize):
        return seed_by_seed(jax.jit(fn).lower(*one_seed(inputs)).compile())
    over_seeds = algos.over_seeds(fn, vectorize=True) if mesh is None else sharding.shard_seeds(fn, mesh, vectorize)
    return jax.jit(over_seeds).lower(*inputs).compile()


def runs_seed_by_seed(mesh, vectorize: bool) -> bool:
    """Whether the CLI's programs are one-seed programs called seed by seed: on one device
    (`mesh` None), seeds not vmapped."""
    return mesh is None and not vectorize


def one_seed(inputs: Any) -> Any:
    """Shapes and dtypes of one seed of `inputs` [S, ...] (`jax.ShapeDtypeStruct`s), to lower a
    one-seed program with."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x)[1:], x.dtype), inputs)


def seed_by_seed(compiled: Callable) -> Callable:
    """`compiled`, a one-seed program, over stacked seeds: `call(*inputs [S, ...])` calls it once
    per seed and stacks the outputs [S, ...] (`call.compiled` is the program). The CLI's programs
    on one device without --vectorize-seeds: the numbers of `jax.jit(algos.over_seeds(fn))`, bit
    for bit (its `lax.map` runs each seed's computation as the lone program does), from a
    program that compiles faster: the map slices every argument and stacks every output leaf
    inside its loop (54 leaves of REINFORCE's state), about 1 of the default chunk's 3.5 s of
    compile. One program serves every --num-seeds, so the compilation cache shares it. (The
    chunk loop carries its state seed by seed, `unstack_seeds`, rather than through this call,
    which would copy the whole state, a replay buffer, twice per chunk.)"""

    def call(*inputs):
        return stack_seeds([compiled(*seed_inputs) for seed_inputs in unstack_seeds(inputs)])

    call.compiled = compiled
    return call


def unstack_seeds(tree: Any) -> list:
    """A pytree of [S, ...] arrays as S pytrees of one seed each (views of its host copy)."""
    host = jax.device_get(tree)
    return [jax.tree.map(lambda x: x[i], host) for i in range(len(jax.tree.leaves(host)[0]))]


def stack_seeds(trees: list) -> Any:
    """S pytrees of one seed each as one pytree of [S, ...] arrays (on the default device)."""
    return jax.device_put(jax.tree.map(lambda *seeds: np.stack(seeds), *jax.device_get(trees)))


def progress_chunk(num_updates: int, log_every: int) -> int:
    """Updates per chunk of a run without resume points: the largest divisor of `num_updates`
    (one compiled chunk program) not above `log_every`, so progress lines come while it trains."""
    if not log_every:
        return num_updates
    return max(d for d in range(1, min(log_every, num_updates) + 1) if num_updates % d == 0)


def resume_args(args: Args, given: list[str] | None = None) -> tuple[Args, Path]:
    """The saved flags of the run in `args.resume` (and its folder), with the flags that may
    differ (`experiment.RESUME_SAFE_FLAGS`) taken from `args` where `given` names them (None: where
    they differ from their defaults); any other flag given is refused."""
    run_dir = Path(args.resume)
    if given is None:
        given = [f.name for f in dataclasses.fields(Args) if getattr(args, f.name) != f.default]
    check_resume_flags(given)
    saved = experiment.load_config(run_dir)["args"]
    if (run_dir / experiment.SUMMARY_FILE).exists():
        raise ValueError(f"`resume`: the run in {run_dir} has finished (it has {experiment.SUMMARY_FILE}).")
    unknown = set(saved) - {f.name for f in dataclasses.fields(Args)}
    if unknown:  # sound files of another version, as a point of another state layout: named so, not "damaged"
        raise ValueError(
            f"{run_dir / experiment.CONFIG_FILE} holds flags this rlpg version does not know, {sorted(unknown)}: the run was "
            f"started by another rlpg version. Its files are untouched: finish the run with the rlpg version that "
            f"started it, or start a new run."
        )
    saved.update(out=run_dir, resume=run_dir, **{k: getattr(args, k) for k in given if k in experiment.RESUME_SAFE_FLAGS})
    return Args(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}), run_dir


def check_resume_flags(given: list[str]) -> None:
    """Refuse, by name (sorted), the flags in `given` (names of Args fields) that may not accompany --resume."""
    refused = sorted(name for name in given if name not in ("resume", *experiment.RESUME_SAFE_FLAGS))
    if refused:
        names = ", ".join(f"--{n.replace('_', '-')}" for n in refused)
        safe = ", ".join(f"--{n.replace('_', '-')}" for n in experiment.RESUME_SAFE_FLAGS)
        raise ValueError(
            f"`--resume` continues a run with the flags it was started with; {names} may not be given with it "
            f"(only {safe} may). Start a new run to change them."
        )


def given_flags(argv: list[str]) -> list[str]:
    """Names of the Args fields spelled out on a command line (`--num-envs 8`, `--num-envs=8`, `--no-overwrite`)."""
    names = {f.name for f in dataclasses.fields(Args)}
    flags = [token[2:].split("=")[0].replace("-", "_") for token in argv if token.startswith("--")]
    flags = [flag[3:] if flag.startswith("no_") and flag not in names else flag for flag in flags]
    return [flag for flag in flags if flag in names]


def check_finite(metrics: dict, out: Path) -> None:
    """Stop with the first (seed, update) whose loss or gradient norm is NaN or inf."""
    for name in ("loss", "grad_norm"):
        if name not in metrics:
            continue
        bad = ~np.isfinite(np.asarray(metrics[name]))
        if bad.any():
            seed, i = (int(j[0]) for j in np.nonzero(bad))
            update = int(np.asarray(metrics["update"])[seed, i])
            point = experiment.latest_resume_point(out)
            kept = f"the last good resume point {point} is intact" if point else "no resume point was written yet"
            raise FloatingPointError(
                f"non-finite {name} ({np.asarray(metrics[name])[seed, i]}) at update {update} of seed {seed}: "
                f"training stopped; {kept}."
            )


class StopOnSignal:
    """Within the block, SIGINT and SIGTERM only set `signum`: the run saves and stops between chunks."""

    def __enter__(self):
        self.signum = None
        self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def main() -> None:
    args = tyro.cli(Args)
    given = given_flags(sys.argv[1:])
    with compile_cache.count_programs() as programs:
        try:
            if args.resume is not None:  # also refuses flags given at their default value
                check_resume_flags(given)
            compile_cache.enable(args.compile_cache)
            unroll_threefry_on_cpu()  # the same random bits, faster training loops on CPU
            if args.distributed:
                jax.distributed.initialize()
            setup = prepare(args, given)
        except REFUSALS as error:  # like tyro's own refusals: one line on stderr, exit status 2
            print(f"rlpg-train: error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        train(setup, programs)


if __name__ == "__main__":
    main()
