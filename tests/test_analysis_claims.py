"""The claim table recovers planted effects with the right verdicts, and rewrites only its block in RESULTS.md."""
import argparse

import pytest

from analysis.claims import build, run, within_noise
from analysis.errors import AnalysisError
from tests.synthetic import PLANTED


@pytest.fixture(scope="module")
def results(synthetic_results):
    return synthetic_results(seeds=(0, 1), n_docs_per_domain=6, units=6)


def _row(rows, what):
    return next(r for r in rows if r["what"].startswith(what) and r["vs"] in ("hybrid", "all"))


def test_planted_effects_and_verdicts(results):
    rows, info = build(results, n_boot=300)
    assert info["seeds"] == {"transformer": 2, "hybrid": 2, "recurrent": 2}
    cf = _row(rows, "content − function")
    planted = PLANTED["content"] - PLANTED["function"]
    assert cf["lo"] <= planted <= cf["hi"] and cf["verdict"] == "agrees"
    oc = _row(rows, "opening − closing delimiters (all domains)")
    assert oc["lo"] <= PLANTED["open_delim"] - PLANTED["close_delim"] <= oc["hi"] and oc["verdict"] == "agrees"
    # the synthetic curves put the hybrid, then the recurrent model, ahead on content words
    assert _row(rows, "content words, not repeated: loss order (final")["verdict"] == "agrees"
    assert _row(rows, "repeated tokens (4-gram): loss order (final")["verdict"] == "agrees"
    assert all(r["claim"] in (1, 2, 3, 4, 6) for r in rows)  # no probe results were written
    assert [r["claim"] for r in rows] == sorted(r["claim"] for r in rows)


def test_gap_within_seed_noise_is_not_a_finding():
    assert within_noise("agrees", 0.05, 0.08).startswith("inconclusive")
    assert within_noise("agrees", 0.05, 0.01) == "agrees"
    assert within_noise("agrees", 0.05, None) == "agrees"


def test_update_replaces_only_the_block(results, tmp_path):
    doc = tmp_path / "RESULTS.md"
    doc.write_text("before\n<!-- claims:begin -->\nold table\n<!-- claims:end -->\nafter\n")
    run(argparse.Namespace(results=str(results), update=str(doc), n_boot=100))
    text = doc.read_text()
    assert text.startswith("before\n<!-- claims:begin -->\n") and text.endswith("<!-- claims:end -->\nafter\n")
    assert "old table" not in text and "| # | claim" in text
    assert (results / "claims.csv").is_file() and (results / "claims.md").is_file()


def test_describe_layers():
    from analysis.claims import describe_layers

    assert describe_layers(["mamba2"] * 3 + ["attention"] + ["mamba2"] * 3 + ["attention"]) == "(mamba2 ×3, attention) ×2"
    assert describe_layers(["attention"] * 8) == "attention ×8"
    assert describe_layers(["mamba2", "attention", "mamba2", "swa"]) == "mamba2, attention, mamba2, swa"


def test_robustness_rows_leave_out_the_overlapping_documents(results, tmp_path):
    import json
    import shutil

    import numpy as np
    import pandas as pd

    from analysis.claims import clean_tokens

    res = tmp_path / "res"
    shutil.copytree(results, res)
    doc = pd.read_parquet(res / "labels.parquet", columns=["doc_index"])["doc_index"].to_numpy()
    n_docs = int(doc.max()) + 1
    docs = {str(i): {"id": f"d{i}", "domain": "x", "ngram13_in_train": 0.9 if i < 3 else 0.0,
                     "sibling_in_train": i == 5} for i in range(n_docs)}
    (res / "eval_overlap.json").write_text(json.dumps({"eval_hash": "h", "n_docs": n_docs, "docs": docs}))
    keep, n_bad, _ = clean_tokens(res, doc)
    assert n_bad == 4 and keep.sum() == np.isin(doc, [0, 1, 2, 5], invert=True).sum()
    run(argparse.Namespace(results=str(res), update=None, n_boot=100))
    text = (res / "claims.md").read_text()
    assert "Without the 4 of" in text and f"({int(keep.sum()):,} tokens left" in text


# ---- claim 5 without the shortcut-settled probe targets (results/probes/shortcuts.npz) ---------------------------
PROBE_KINDS = (("pronoun", "pronoun"), ("entity", "box"), ("brackets", "delim"), ("recall", "value"))


def write_probe_results(res, settled_share: dict, planted: dict, h: str = "hsynth", n_docs: int = 24,
                        per_doc: int = 8):
    """results/probes/{transformer,hybrid}-s{0,1}.npz for the four claim-5 probes, and the shortcut flags.

    Per probe, `settled_share` of the targets (evenly spread) are settled by a shortcut; `planted[probe]` =
    (gap on the settled targets, gap on the others), gap = loss(transformer) - loss(hybrid)."""
    import numpy as np

    from analysis.probes.scoring import save_results
    from analysis.probes.shortcuts import save_shortcuts

    n = n_docs * per_doc
    cols: dict = {k: [] for k in ("probe", "kind", "doc", "level", "settled", "gap")}
    for p, (probe, kind) in enumerate(PROBE_KINDS):
        doc = p * n_docs + np.repeat(np.arange(n_docs), per_doc)
        settled = (np.arange(n) * settled_share.get(probe, 0.0)) % 1 + settled_share.get(probe, 0.0) > 1 - 1e-9
        cols["probe"] += [probe] * n
        cols["kind"] += [kind] * n
        cols["doc"].append(doc)
        cols["level"].append(np.where(doc % n_docs < n_docs // 2, 1, 2))
        cols["settled"].append(settled)
        cols["gap"].append(np.where(settled, *planted[probe]))
    probe, kind = np.array(cols["probe"]), np.array(cols["kind"])
    doc, level = np.concatenate(cols["doc"]).astype(np.int32), np.concatenate(cols["level"]).astype(np.int32)
    settled, gap = np.concatenate(cols["settled"]), np.concatenate(cols["gap"])
    N = len(probe)
    rng = np.random.default_rng(0)
    base = 3.0 + 0.3 * rng.standard_normal(N)
    for arch in ("transformer", "hybrid"):
        for s in (0, 1):
            loss = base + (gap if arch == "transformer" else 0.0) + 0.01 * rng.standard_normal(N)
            arrays = {"loss": loss.astype(np.float32), "correct": rng.random(N) < 0.3, "token": np.zeros(N, np.int64),
                      "n_pieces": np.ones(N, np.int16), "first_shared": np.zeros(N, bool),
                      "chance": np.full(N, 0.25, np.float32), "chance_token": np.full(N, 0.25, np.float32),
                      "doc": doc, "level": level, "probe": probe, "kind": kind, "answer": np.array(["x"] * N),
                      "piece": np.array([" x"] * N)}
            save_results(res / "probes" / f"{arch}-s{s}.npz", arrays,
                         {"probe_set_hash": h, "arch": arch, "axes": {p: "level" for p, _ in PROBE_KINDS}})
    sc = {"shortcut_candidates": np.where(settled, 1, 2).astype(np.int16), "shortcut_settles": settled,
          "shortcut_chance": np.where(settled, 1.0, 0.5).astype(np.float32), "probe": probe, "kind": kind,
          "level": level}
    return save_shortcuts(res / "probes" / "shortcuts.npz", sc, h), settled


def test_claim5_rows_without_shortcut_settled_targets(results, tmp_path):
    """Brackets: the hybrid wins by 1.0 nat on the settled half and loses by 0.5 on the rest, so the gap flips
    from +0.25 (disagrees with "transformer wins") to -0.5 (agrees) without the settled targets; pronoun: the
    whole +0.2 gap sits on the settled quarter; entity and recall have nothing settled and get no extra row."""
    import shutil

    import pandas as pd

    res = tmp_path / "res"
    shutil.copytree(results, res)
    sc_path, settled = write_probe_results(
        res, {"brackets": 0.5, "pronoun": 0.25},
        {"pronoun": (0.8, 0.0), "entity": (0.1, 0.1), "brackets": (1.0, -0.5), "recall": (0.3, 0.3)})
    rows, _ = build(res, n_boot=200)
    c5 = [r for r in rows if r["claim"] == 5]
    assert [r["what"] for r in c5] == [f"probe {p}: loss gap (all levels)" for p, _ in PROBE_KINDS] + [
        f"probe {p}: loss gap (all levels), excluding shortcut-settled targets" for p in ("pronoun", "brackets")]
    by = {r["what"]: r for r in c5}
    full, kept = (lambda p: by[f"probe {p}: loss gap (all levels)"],
                  lambda p: by[f"probe {p}: loss gap (all levels), excluding shortcut-settled targets"])
    assert full("brackets")["measured"] == pytest.approx(0.25, abs=0.01) and full("brackets")["verdict"] == "disagrees"
    assert kept("brackets")["measured"] == pytest.approx(-0.5, abs=0.01) and kept("brackets")["verdict"] == "agrees"
    assert kept("brackets")["hi"] < 0 < full("brackets")["lo"]
    assert full("pronoun")["measured"] == pytest.approx(0.2, abs=0.01) and full("pronoun")["verdict"] == "agrees"
    assert kept("pronoun")["measured"] == pytest.approx(0.0, abs=0.01)
    n = len(settled) // 4
    assert kept("brackets")["tokens"] == n // 2 and full("brackets")["tokens"] == n
    assert kept("pronoun")["tokens"] == n - n // 4
    assert kept("brackets")["note"].startswith(f"{n // 2:,} of {n:,} targets left out")
    assert "shortcut accuracy on the rest 0.500" in kept("brackets")["note"]
    assert full("entity")["measured"] == pytest.approx(0.1, abs=0.01)

    # without the shortcuts file: the same rows less the added ones
    sc_path.rename(tmp_path / "shortcuts.npz")
    plain, _ = build(res, n_boot=200)
    assert pd.DataFrame(plain).equals(pd.DataFrame([r for r in rows if "excluding shortcut-settled" not in r["what"]]))
    # the shortcut flags of another probe set are refused
    from analysis.probes.shortcuts import load_shortcuts, save_shortcuts

    sc = load_shortcuts(tmp_path / "shortcuts.npz")
    save_shortcuts(sc_path, {k: getattr(sc, k) for k in ("shortcut_candidates", "shortcut_settles", "shortcut_chance",
                                                          "probe", "kind", "level")}, "another_probe_set")
    with pytest.raises(AnalysisError, match="another_probe_set"):
        build(res, n_boot=50)
