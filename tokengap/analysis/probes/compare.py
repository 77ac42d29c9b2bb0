"""Gap tables for two architectures on the probes: per probe, kind and difficulty level.

    python -m tokengap.analysis probes compare \\
        --a results/probes/transformer-s0.npz results/probes/transformer-s1.npz \\
        --b results/probes/hybrid-s0.npz results/probes/hybrid-s1.npz

Signs follow the paper: gap = loss(A) - loss(B) and acc_gain = accuracy(B) - accuracy(A), so positive values
favour B (A = transformer, B = hybrid: positive favours the hybrid). Several files per side are seeds: each
target's loss and correctness are averaged over a side's seeds first; the 95% CI resamples probe documents
(`tokengap.analysis.stats.cluster_bootstrap_ci`); the seed range is the min and max of the gap over matched seed
pairs (same seed number on both sides, else the files in the order given).

`exclude` (a per-target bool mask, e.g. `shortcut_settles` of results/probes/shortcuts.npz) leaves targets
out of every row; a level with no target left gets no row. `shortcut_chance` (per target) adds the column
`shortcut_chance`: the accuracy of guessing among what the shortcut leaves, on the targets kept.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from tokengap.analysis.probes.scoring import ProbeResult
from tokengap.analysis.stats import cluster_bootstrap_ci

ALL = "all"


def seed_of(result: ProbeResult) -> Optional[int]:
    """From the file name (<arch>-s<seed>.npz), else meta["seed"]."""
    m = re.search(r"-s(\d+)$", Path(result.meta.get("path", "")).stem)
    if m:
        return int(m.group(1))
    return result.meta.get("seed")


def check_same_targets(results: Sequence[ProbeResult]) -> None:
    ref = results[0]
    for r in results[1:]:
        if r.meta.get("probe_set_hash") != ref.meta.get("probe_set_hash"):
            ha, hb = str(r.meta.get("probe_set_hash"))[:16], str(ref.meta.get("probe_set_hash"))[:16]
            raise ValueError(f"{r.meta.get('path')} and {ref.meta.get('path')} were scored on different probe "
                             f"sets ({ha}… vs {hb}…)")
        for k in ("doc", "level", "probe", "kind"):
            if not np.array_equal(getattr(r, k), getattr(ref, k)):
                raise ValueError(f"{r.meta.get('path')}: target table differs from {ref.meta.get('path')} ({k})")


def seed_pairs(a: Sequence[ProbeResult], b: Sequence[ProbeResult]) -> list[tuple[int, int]]:
    sa, sb = [seed_of(r) for r in a], [seed_of(r) for r in b]
    common = [s for s in sa if s is not None and s in sb]
    if common:
        return [(sa.index(s), sb.index(s)) for s in common]
    return list(zip(range(len(a)), range(len(b))))


def groups(ref: ProbeResult) -> list[tuple[str, str, object, np.ndarray]]:
    """(probe, kind, level or "all", mask) in the order of the probe set."""
    out = []
    seen = dict.fromkeys(zip(ref.probe.tolist(), ref.kind.tolist()))
    for probe, kind in seen:
        pk = (ref.probe == probe) & (ref.kind == kind)
        for level in sorted(set(ref.level[pk].tolist())):
            out.append((probe, kind, level, pk & (ref.level == level)))
        out.append((probe, kind, ALL, pk))
    return out


def compare(a: Sequence[ProbeResult], b: Sequence[ProbeResult], n_boot: int = 1000, seed: int = 0,
            exclude: Optional[np.ndarray] = None, shortcut_chance: Optional[np.ndarray] = None) -> pd.DataFrame:
    """One row per (probe, kind, level) and per (probe, kind) over all levels.

    exclude: (n_targets,) bool, True = leave the target out (rows left empty are dropped; column n_excluded
    counts the targets left out of each row). shortcut_chance: (n_targets,) float, adds its mean over the
    targets kept as column shortcut_chance. Without them the table is what it always was."""
    if not a or not b:
        raise ValueError("need at least one result file per side")
    check_same_targets(list(a) + list(b))
    ref = a[0]
    n = len(ref.loss)
    for name, arr in (("exclude", exclude), ("shortcut_chance", shortcut_chance)):
        if arr is not None and np.shape(arr) != (n,):
            raise ValueError(f"{name} has shape {np.shape(arr)}, the results have {n} targets")
    keep = np.ones(n, bool) if exclude is None else ~np.asarray(exclude, dtype=bool)
    la, lb = np.mean([r.loss for r in a], axis=0), np.mean([r.loss for r in b], axis=0)
    ca, cb = np.mean([r.correct for r in a], axis=0), np.mean([r.correct for r in b], axis=0)
    pairs = seed_pairs(a, b)
    rows = []
    for probe, kind, level, group in groups(ref):
        mask = group & keep
        if not mask.any():
            continue
        g = cluster_bootstrap_ci(la - lb, ref.doc, n_boot=n_boot, seed=seed, mask=mask)
        acc = cluster_bootstrap_ci(cb - ca, ref.doc, n_boot=n_boot, seed=seed, mask=mask)
        seed_gaps = [float((a[i].loss[mask] - b[j].loss[mask]).mean()) for i, j in pairs]
        seed_accs = [float(b[j].correct[mask].mean() - a[i].correct[mask].mean()) for i, j in pairs]
        rows.append({
            "probe": probe, "kind": kind, "level": level, "n_targets": g.n_tokens, "n_docs": g.n_clusters,
            "chance": float(ref.chance[mask].mean()), "chance_token": float(ref.chance_token[mask].mean()),
            "loss_a": float(la[mask].mean()), "loss_b": float(lb[mask].mean()),
            "acc_a": float(ca[mask].mean()), "acc_b": float(cb[mask].mean()),
            "gap": g.mean, "gap_lo": g.lo, "gap_hi": g.hi,
            "acc_gain": acc.mean, "acc_gain_lo": acc.lo, "acc_gain_hi": acc.hi,
            "gap_seed_min": min(seed_gaps), "gap_seed_max": max(seed_gaps),
            "acc_gain_seed_min": min(seed_accs), "acc_gain_seed_max": max(seed_accs),
            "n_seed_pairs": len(pairs),
        })
        if exclude is not None:
            rows[-1]["n_excluded"] = int((group & ~keep).sum())
        if shortcut_chance is not None:
            rows[-1]["shortcut_chance"] = float(np.asarray(shortcut_chance)[mask].mean())
    return pd.DataFrame(rows)


def format_table(df: pd.DataFrame, name_a: str = "A", name_b: str = "B") -> str:
    """A readable text table: losses, accuracies, gap [CI] {seed range}."""
    def ci(m, lo, hi):
        return f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]"

    out = pd.DataFrame({
        "probe": df["probe"], "kind": df["kind"], "level": df["level"].astype(str), "targets": df["n_targets"],
        "docs": df["n_docs"], "chance": df["chance"].map("{:.3f}".format),
        **({"left out": df["n_excluded"]} if "n_excluded" in df else {}),
        **({"shortcut": df["shortcut_chance"].map("{:.3f}".format)} if "shortcut_chance" in df else {}),
        f"loss {name_a}": df["loss_a"].map("{:.3f}".format), f"loss {name_b}": df["loss_b"].map("{:.3f}".format),
        "gap [95% CI]": [ci(*x) for x in zip(df["gap"], df["gap_lo"], df["gap_hi"])],
        f"acc {name_a}": df["acc_a"].map("{:.3f}".format), f"acc {name_b}": df["acc_b"].map("{:.3f}".format),
        "acc gain [95% CI]": [ci(*x) for x in zip(df["acc_gain"], df["acc_gain_lo"], df["acc_gain_hi"])],
    })
    if (df["n_seed_pairs"] > 1).any():
        out["gap seed range"] = [f"{lo:+.3f}..{hi:+.3f}" for lo, hi in zip(df["gap_seed_min"], df["gap_seed_max"])]
    return out.to_string(index=False)
