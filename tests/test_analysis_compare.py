"""compare: refusal of mismatched eval sets, multi-seed gaps with seed spread, and the CLI end to end."""
import argparse
import json

import numpy as np
import pytest

from tokengap.analysis import compare
from tokengap.analysis.errors import AnalysisError
from tokengap.analysis.labels import read_labels
from tokengap.evaluation.scorefile import load_scores, save_scores


@pytest.fixture(scope="module")
def results(synthetic_results):
    return synthetic_results(archs=("transformer", "hybrid"), seeds=(0, 1), n_docs_per_domain=3, units=3, curves=False)


def cli(results, out, a=None, b=None, labels=None):
    p = argparse.ArgumentParser()
    compare.add_arguments(p)
    argv = ["--out", str(out), "--labels", str(labels or results / "labels.parquet"), "--n-boot", "200"]
    for f in a or [results / "scores/transformer-s0.npz", results / "scores/transformer-s1.npz"]:
        argv += ["--a", str(f)]
    for f in b or [results / "scores/hybrid-s0.npz", results / "scores/hybrid-s1.npz"]:
        argv += ["--b", str(f)]
    return compare.run(p.parse_args(argv))


def test_cli_writes_tables(results, tmp_path, capsys):
    assert cli(results, tmp_path) == 0
    import pandas as pd
    gaps = pd.read_csv(tmp_path / "gaps.csv")
    reg = pd.read_csv(tmp_path / "regression.csv")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["a"]["name"] == "transformer" and summary["b"]["name"] == "hybrid"
    allrow = gaps[gaps["category"] == "all"].iloc[0]
    a = np.mean([load_scores(results / f"scores/transformer-s{i}.npz").loss.astype(float) for i in (0, 1)], 0)
    b = np.mean([load_scores(results / f"scores/hybrid-s{i}.npz").loss.astype(float) for i in (0, 1)], 0)
    assert np.isclose(allrow["gap"], (a - b).mean(), atol=1e-6) and allrow["lo"] < allrow["gap"] < allrow["hi"]
    assert allrow["seed_pairs"] == 2 and allrow["seed_min"] <= allrow["gap"] <= allrow["seed_max"]
    assert {"content", "function", "open_delim", "close_delim", "log_freq", "log1p_ctx_pos"} <= set(reg["term"])
    assert "gap = loss(transformer) - loss(hybrid)" in capsys.readouterr().out


def test_seed_spread_is_over_matched_pairs(results):
    labels, _ = read_labels(results / "labels.parquet")
    a = compare.load_side([results / "scores/transformer-s0.npz", results / "scores/transformer-s1.npz"])
    b = compare.load_side([results / "scores/hybrid-s0.npz", results / "scores/hybrid-s1.npz"])
    g = compare.gap_table(a, b, labels, compare.GapConfig(n_boot=100, families=("overall",)))
    pair = [(a.loss[i].astype(float) - b.loss[i].astype(float)).mean() for i in (0, 1)]
    row = g.iloc[0]
    assert np.isclose(row["seed_min"], min(pair)) and np.isclose(row["seed_max"], max(pair))
    assert np.isclose(row["seed_sd"], np.std(pair, ddof=1))


@pytest.mark.parametrize("key", ["eval_hash", "tokenizer_sha256"])
def test_refuses_scores_of_another_eval_set_or_tokenizer(results, tmp_path, key):
    s = load_scores(results / "scores/hybrid-s0.npz")
    bad = tmp_path / "other.npz"
    save_scores(bad, s.loss, s.correct, {**s.meta, key: "f" * 64})
    with pytest.raises(AnalysisError, match=key):
        cli(results, tmp_path / "o", b=[bad])
    with pytest.raises(ValueError, match=key):  # and within one side too
        compare.load_side([results / "scores/hybrid-s0.npz", bad])


def test_refuses_labels_of_another_eval_set(results, tmp_path):
    import pyarrow.parquet as pq
    t = pq.read_table(results / "labels.parquet")
    meta = json.loads(t.schema.metadata[b"tokengap"])
    meta["eval_hash"] = "0" * 64
    pq.write_table(t.replace_schema_metadata({b"tokengap": json.dumps(meta).encode()}), tmp_path / "l.parquet")
    with pytest.raises(AnalysisError, match="eval_hash"):
        cli(results, tmp_path / "o", labels=tmp_path / "l.parquet")


