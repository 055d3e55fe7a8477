"""benchmarks/gpu.sh runs end to end: its --tiny mode, on this CPU, writes every result file."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_script_tiny_writes_every_table(tmp_path):
    env = {**os.environ, "RLPG_RESULTS": str(tmp_path), "RLPG_COMPILE_CACHE": str(tmp_path / "cache"), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--tiny"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    throughput = json.loads((tmp_path / "throughput-cpu-tiny.json").read_text())
    assert [(e["num_envs"], e["num_seeds"]) for e in throughput["grid"]] == [(4, 1), (4, 2)]
    assert all(e["steps_per_s"] > 0 for e in throughput["grid"])
    ppo = json.loads((tmp_path / "ppo-vs-rejax-tiny.json").read_text())
    assert ppo["rlpg"]["steps_per_s"] > 0 and ppo["rejax"] is None
    determinism = json.loads((tmp_path / "determinism-cpu-tiny.json").read_text())
    assert "--xla_gpu_deterministic_ops=true" in determinism["xla_flags"]
    assert determinism["identical"], determinism  # two processes, compiled afresh: bit for bit
    for stem in ("throughput-cpu-tiny", "ppo-vs-rejax-tiny", "determinism-cpu-tiny"):
        assert (tmp_path / f"{stem}.md").read_text().startswith("# ")
