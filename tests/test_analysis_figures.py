"""Figures and report from tiny synthetic results: every figure, graceful skipping, byte-identical reruns."""
import os
import shutil

import pytest

from tokengap.analysis.figures import make_all
from tokengap.analysis.report import write_report

OUR_FIGURES = {"gap_by_domain", "content_function", "gap_by_ptb", "code_markup", "repetition", "delimiters",
               "regression", "curves"}


@pytest.fixture(scope="module")
def results(synthetic_results):
    return synthetic_results(seeds=(0, 1), n_docs_per_domain=3, units=3)


def test_all_figures_and_report(results, tmp_path):
    entries, info = make_all(results, tmp_path / "figs", n_boot=100, probes=False)
    names = {e["name"] for e in entries}
    assert OUR_FIGURES <= names
    for e in entries:
        for k in ("png", "pdf", "csv"):
            assert os.path.getsize(e[k]) > 0
        assert e["title"] and e["caption"]
    report = write_report(entries, tmp_path / "report.html", info)
    html = report.read_text()
    for name in OUR_FIGURES:
        assert f"figs/{name}.png" in html
    assert "Synthetic data" in html and "transformer: 2 seed(s)" in html


def test_rerun_is_byte_identical(results, tmp_path):
    """Same results, same bytes: the bootstrap is seeded, and PNG/PDF carry no date."""
    from tokengap.analysis.compare import GapConfig, gap_table, load_side
    from tokengap.analysis.figures import plots, read_curves
    from tokengap.analysis.labels import read_labels

    labels, _ = read_labels(results / "labels.parquet")
    a = load_side([results / "scores/transformer-s0.npz"], "transformer")
    b = load_side([results / "scores/hybrid-s0.npz"], "hybrid")
    meta = {"a": "transformer", "n_boot": 100, "seeds": "1 seed"}
    outs = []
    for k in ("a", "b"):
        gaps = gap_table(a, b, labels, GapConfig(n_boot=100, families=("overall", "domain")))
        outs += [plots.fig_domain(gaps, meta, tmp_path / k), plots.fig_curves(read_curves(results / "curves"),
                                                                              tmp_path / k)]
    for x, y in zip(outs[:2], outs[2:]):
        for key in ("png", "pdf", "csv"):
            assert open(x[key], "rb").read() == open(y[key], "rb").read(), (x["name"], key)


def test_missing_inputs_are_skipped(results, tmp_path, capsys):
    part = tmp_path / "part"
    (part / "scores").mkdir(parents=True)
    shutil.copy(results / "labels.parquet", part)
    shutil.copy(results / "scores/transformer-s0.npz", part / "scores")
    shutil.copy(results / "scores/hybrid-s0.npz", part / "scores")
    entries, _ = make_all(part, part / "figs", n_boot=50, probes=False)  # one seed, no recurrent model, no curves
    names = {e["name"] for e in entries}
    assert "gap_by_domain" in names and "curves" not in names
    assert "no training curves" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    entries, info = make_all(empty, empty / "figs", n_boot=50, probes=False)
    assert not {e["name"] for e in entries} & OUR_FIGURES
    assert "no figures" in write_report(entries, empty / "r.html", info).read_text().lower()
