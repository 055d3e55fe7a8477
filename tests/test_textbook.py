"""The textbook examples as REINFORCE runs with linear policies, scored by exact values (3 seeds)."""

import json

import numpy as np
import pytest

from experiments import textbook


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("textbook") / "run"
    by_env = {r["env"]: r for r in textbook.main(textbook.Args(out=out, num_seeds=3))}
    return out, by_env


def final(result):
    return np.asarray(result["final_exact_return"])


def test_bandit_learns_the_best_arm(results):
    r = results[1]["MultiArmedBandit-v0"]
    assert r["initial_exact_return"] == pytest.approx(2.5)  # uniform over arms 1, 2, 4, 3
    assert np.median(final(r)) >= 3.9 and r["best"] == pytest.approx(4.0)


def test_continuous_bandit_finds_the_optimum_and_shrinks_sigma(results):
    r = results[1]["ContinuousBandit-v0"]
    assert r["initial_exact_return"] == pytest.approx(-(1.5**2) - 1.0)  # μ = 0, σ = 1
    assert np.all(final(r) >= -0.05)


def test_cliff_walking_learns_a_short_path(results):
    r = results[1]["CliffWalking-v0"]
    assert r["best"] == pytest.approx(-13.0)  # 13 steps along the cliff edge
    assert r["initial_exact_return"] < -1000
    assert np.median(final(r)) >= -20 and np.all(final(r) >= -30)


def test_aliased_gridworld_reinforce_finds_the_stochastic_optimum(results):
    r = results[1]["AliasedGridworld-v0"]
    deterministic, stochastic = r["best_deterministic_over_observations"], r["best_stochastic_over_observations"]
    assert stochastic > deterministic + 30  # a deterministic policy traps two of five starts
    assert np.all(final(r) > deterministic + 30)
    assert np.median(final(r)) >= stochastic - 0.5


def test_writes_table_plot_and_json(results):
    out, _ = results
    saved = json.loads((out / textbook.RESULTS_JSON).read_text())
    assert [r["env"] for r in saved] == list(textbook.RUNS)
    assert "AliasedGridworld-v0" in (out / textbook.RESULTS_MD).read_text()
    assert (out / textbook.CURVES_PLOT).read_bytes()[:4] == b"\x89PNG"
