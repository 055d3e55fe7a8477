"""Live tracking: the TensorBoard event files and the (offline) Weights & Biases run hold every
seed's per-update metrics, equal to metrics.csv, written chunk by chunk while the run trains."""

import csv
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from experiments import train as train_cli
from rlpg import tracking

# 12 updates of 2 envs x 16 steps, 2 seeds; progress every 4 updates, so 3 chunks of 4.
FLAGS = dict(num_seeds=2, total_timesteps=384, num_envs=2, num_steps=16, hidden=(8,), eval_episodes=1, log_every=4)


def read_events(folder: Path) -> dict[tuple[str, int], float]:
    """{(tag, step): value} of the scalars in a folder's TFRecord event files (length, crc, data, crc)."""
    scalars = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                scalars[value.tag, event.step] = value.simple_value
    return scalars


def read_wandb_records(run_file: Path) -> list:
    """The Record protobufs of an offline wandb run file: a 7-byte header, then LevelDB-log records
    (crc 4, length 2, type 1: full / first / middle / last) in 32 KiB blocks."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    pos, pending, records = 7, b"", []
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a record header is padding
            pos += 32768 - pos % 32768
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def read_wandb_history(run_file: Path, timeout: float = 60.0) -> list[dict]:
    """The history rows of an offline run, once its exit record is on disk (wandb's core process
    writes the file after `finish()` returns)."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_wandb_records(run_file) if run_file.read_bytes()[:4] == b":W&B" else []
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return [{"_step": r.history.step.num, **{item.key or "/".join(item.nested_key): item.value_json for item in r.history.item}}
            for r in records if r.WhichOneof("record_type") == "history"]


def csv_rows(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "metrics.csv").open()))


@pytest.fixture(scope="module")
def tensorboard_run(tmp_path_factory):
    """A run with --track tensorboard; after every chunk, the update counts then on disk per seed."""
    out = tmp_path_factory.mktemp("track") / "tb"
    on_disk = []
    log_chunk = tracking.TensorBoardTracker.log_chunk

    def spy(self, metrics):
        log_chunk(self, metrics)
        on_disk.append([len({step for tag, step in read_events(out / "tensorboard" / f"seed_{i}") if tag == "update"})
                        for i in range(FLAGS["num_seeds"])])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tracking.TensorBoardTracker, "log_chunk", spy)
        train_cli.run(train_cli.Args(out=out, track="tensorboard", **FLAGS))
    return out, on_disk


def test_tensorboard_events_equal_metrics_csv(tensorboard_run):
    out, _ = tensorboard_run
    rows = csv_rows(out)
    assert len(rows) == 2 * 12
    for seed in range(2):
        events = read_events(out / "tensorboard" / f"seed_{seed}")
        mine = [r for r in rows if int(r["seed"]) == seed]
        names = [k for k in mine[0] if k not in ("seed", "env_steps")]
        assert {tag for tag, _ in events} == set(names)
        expected = {(name, int(row["env_steps"])): float(row[name]) for row in mine for name in names}
        assert any(np.isnan(v) for v in expected.values())  # updates in which no episode finished: not logged
        expected = {k: v for k, v in expected.items() if not np.isnan(v)}
        assert events.keys() == expected.keys()  # one point per metric and update, no more
        for key, value in expected.items():  # event values are float32, as the metrics are
            assert events[key] == np.float32(value), (seed, key)


def test_tensorboard_is_written_chunk_by_chunk(tensorboard_run):
    _, on_disk = tensorboard_run
    assert on_disk == [[4, 4], [8, 8], [12, 12]]


def test_wandb_offline_run_holds_the_same_metrics(tensorboard_run, tmp_path, monkeypatch):
    out, _ = tensorboard_run
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)  # no key: offline by itself, no network needed
    rows = csv_rows(out)
    names = [k for k in rows[0] if k not in ("seed", "env_steps")]
    metrics = {k: np.array([[float(r[k]) for r in rows if int(r["seed"]) == s] for s in range(2)], np.float32)
               for k in names + ["env_steps"]}
    with tracking.make_tracker("wandb", tmp_path, 2, {"algo": "reinforce"}) as tracker:
        assert tracker.run.settings.mode == "offline"
        tracker.log_chunk({k: v[:, :5] for k, v in metrics.items()})  # two chunks, as a run logs them
        tracker.log_chunk({k: v[:, 5:] for k, v in metrics.items()})
    (run_file,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    history = read_wandb_history(run_file)
    assert len(history) == 12
    for row in rows:
        logged = next(h for h in history if int(h["_step"]) == int(row["env_steps"]))
        for name in names:
            key = f"seed_{row['seed']}/{name}"
            if np.isnan(float(row[name])):
                assert key not in logged
            else:
                assert float(logged[key]) == np.float32(float(row[name])), (row["seed"], name)


def test_wandb_tracker_of_a_resumed_run_folder_continues_its_run_id(tmp_path, monkeypatch):
    """A run folder keeps its W&B run id: the tracker of the resumed run (a new process, the same
    folder) logs to the same run (online: resumed; offline: a second folder `wandb sync --append`
    adds after the first), not to a new run of the same name; another folder gets another id."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    ids = []
    for out in (tmp_path / "run", tmp_path / "run", tmp_path / "other"):
        with tracking.make_tracker("wandb", out, 1, {"algo": "reinforce"}) as tracker:
            ids.append(tracker.run.id)
    assert ids[0] == ids[1] != ids[2]
    assert (tmp_path / "run" / "wandb" / tracking.WandbTracker.RUN_ID_FILE).read_text() == ids[0]


def test_unknown_tracker_is_named(tmp_path):
    with pytest.raises(ValueError, match="`track` must be one of"):
        tracking.make_tracker("mlflow", tmp_path, 1, {})


@pytest.mark.parametrize("kind, module", [("tensorboard", "tensorboardX"), ("wandb", "wandb")])
def test_missing_package_names_the_extra(kind, module, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(ImportError, match=f'pip install "rlpg\\[{kind}\\]"'):
        tracking.make_tracker(kind, tmp_path, 1, {})
