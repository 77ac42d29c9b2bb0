"""The committed score files: stored in 16 bits (tokengap/evaluation/scorefile.py), they give every reported category
mean (filters, PTB tags of >= 100 tokens, domains; single files and the seed-averaged gaps) within 1e-4 nats of the
float32 losses they were made from (results/scores/float32_means.json, computed before the conversion)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tokengap.evaluation.scorefile import Q_STEP, load_scores, save_scores

RESULTS = Path(__file__).resolve().parents[1] / "results"


@pytest.fixture(scope="module")
def masks():
    z = np.load(RESULTS / "filters.npz")
    m = {f"filter/{k}": z[k] for k in z.files if k != "eval_hash"}
    lab = pd.read_parquet(RESULTS / "labels.parquet", columns=["ptb", "domain"])
    ptb, dom = lab["ptb"].astype(str).to_numpy(), lab["domain"].astype(str).to_numpy()
    m.update({f"ptb/{t}": ptb == t for t in np.unique(ptb)})
    m.update({f"domain/{d}": dom == d for d in np.unique(dom)})
    return m


def test_16_bit_score_files_move_no_category_mean_by_more_than_1e_4(masks):
    ref = json.loads((RESULTS / "scores" / "float32_means.json").read_text())
    worst = 0.0
    loaded = {}
    for name, means in ref["loss"].items():
        s = load_scores(RESULTS / "scores" / f"{name}.npz")
        assert s.meta["loss_encoding"].startswith("uint16")
        loaded[name] = s.loss.astype(np.float64)
        for k, want in means.items():
            got = loaded[name][masks[k]].mean()
            worst = max(worst, abs(got - want))
            assert abs(got - want) <= 1e-4, (name, k, got, want)
    for pair, means in ref["gap_seed_mean"].items():
        a, b = pair.split("-")
        g = (loaded[f"{a}-s0"] + loaded[f"{a}-s1"]) / 2 - (loaded[f"{b}-s0"] + loaded[f"{b}-s1"]) / 2
        for k, want in means.items():
            assert abs(g[masks[k]].mean() - want) <= 1e-4, (pair, k)
    assert len(ref["loss"]) == 6 and worst > 0  # really a lossy code, and still within the bound


def test_the_16_bit_code_round_trips_within_half_a_step_and_keeps_large_losses(tmp_path):
    rng = np.random.default_rng(0)
    loss = np.concatenate([rng.exponential(3.0, 10_000), [0.0, 31.99, 32.5, 80.0]]).astype(np.float32)
    ok = rng.random(loss.shape[0]) > 0.5
    s = load_scores(save_scores(tmp_path / "a.npz", loss, ok, {"eval_hash": "e"}))
    assert s.loss.dtype == np.float32 and np.abs(s.loss - loss).max() <= Q_STEP / 2 + 1e-6
    assert s.loss[-2:].tolist() == [32.5, 80.0] and (s.correct == ok).all()
    exact = load_scores(save_scores(tmp_path / "b.npz", loss, ok, {}, precision="float32"))
    assert np.array_equal(exact.loss, loss)
    with pytest.raises(ValueError, match="finite"):
        save_scores(tmp_path / "c.npz", np.array([1.0, np.nan], np.float32), np.zeros(2, bool), {})
