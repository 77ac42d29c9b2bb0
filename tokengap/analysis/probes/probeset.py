"""The probe set on disk: probes.jsonl (documents), targets.jsonl (scored positions), manifest.json.

    from tokengap.analysis.probes.probeset import generate_probe_set, ProbeSet
    generate_probe_set("build/probes", seed=0, preset="small")
    ps = ProbeSet.load("build/probes")

Same seed and preset -> byte-identical files (no dates, no paths in them).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

from tokengap.evaluation.evalset import read_jsonl, sha256_bytes
from tokengap.analysis.probes import brackets, entity, pronoun, recall
from tokengap.analysis.probes.base import count_pretokens, generate_docs
from tokengap.models.atomic import atomic_write_text

PROBES = {p.name: p for p in (pronoun.PROBE, entity.PROBE, brackets.PROBE, recall.PROBE)}
PRESETS = ("small", "tiny")
DOCS, TARGETS, MANIFEST = "probes.jsonl", "targets.jsonl", "manifest.json"


def _jsonl(records) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def configs_for(preset: str, probes: Optional[Sequence[str]] = None, docs_per_level: Optional[int] = None) -> dict:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    names = list(probes) if probes else list(PROBES)
    unknown = [n for n in names if n not in PROBES]
    if unknown:
        raise ValueError(f"unknown probe(s) {unknown} (known: {', '.join(PROBES)})")
    cfgs = {n: PROBES[n].presets[preset] for n in names}
    if docs_per_level is not None:
        cfgs = {n: dataclasses.replace(c, docs_per_level=docs_per_level) for n, c in cfgs.items()}
    return cfgs


def baseline_rows(targets: Sequence[dict]) -> list[dict]:
    """Per (probe, kind, level): targets, chance, share of the most frequent answer, and the accuracy of every
    heuristic stored with the targets (a shortcut that beats chance is a giveaway; see docs/probes.md)."""
    groups: dict = {}
    for t in targets:
        axis = PROBES[t["probe"]].axis
        groups.setdefault((t["probe"], t["kind"], t[axis]), []).append(t)
    rows = []
    for (probe, kind, level), ts in sorted(groups.items(), key=lambda kv: (list(PROBES).index(kv[0][0]),) + kv[0][1:]):
        counts: dict = {}
        for t in ts:
            counts[t["answer"]] = counts.get(t["answer"], 0) + 1
        row = {"probe": probe, "kind": kind, "level": level, "n_targets": len(ts),
               "chance": round(sum(1 / len(t["candidates"]) for t in ts) / len(ts), 4),
               "top_answer_share": round(max(counts.values()) / len(ts), 4)}
        for h in sorted({h for t in ts for h in t["baselines"]}):
            row[h] = round(sum(t["baselines"].get(h) == t["answer"] for t in ts) / len(ts), 4)
        rows.append(row)
    return rows


def generate_probe_set(out_dir: Union[str, Path], seed: int = 0, preset: str = "small",
                       probes: Optional[Sequence[str]] = None, docs_per_level: Optional[int] = None) -> dict:
    """Write the probe set under out_dir and return its manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfgs = configs_for(preset, probes, docs_per_level)
    docs, targets, longest = [], [], {}
    for name, cfg in cfgs.items():
        for doc, recs in generate_docs(PROBES[name], cfg, seed):
            docs.append(doc)
            targets.extend(recs)
            longest[name] = max(longest.get(name, 0), count_pretokens(doc["text"]))
    docs_text, targets_text = _jsonl(docs), _jsonl(targets)
    manifest = {
        "seed": seed, "preset": preset,
        "probes": {n: {"title": PROBES[n].title, "axis": PROBES[n].axis, "kinds": list(PROBES[n].kinds),
                       "config": dataclasses.asdict(c), "max_doc_pretokens": longest.get(n, 0)}
                   for n, c in cfgs.items()},
        "n_docs": len(docs), "n_targets": len(targets),
        "probe_set_hash": sha256_bytes(docs_text.encode(), targets_text.encode()),
        "baselines": baseline_rows(targets),
    }
    # it reads a ProbeSet: imported here, not on top
    from tokengap.analysis.probes.shortcuts import add_shortcut_columns
    add_shortcut_columns(ProbeSet(docs, targets, manifest, manifest["probe_set_hash"]))
    atomic_write_text(out_dir / DOCS, docs_text)
    atomic_write_text(out_dir / TARGETS, targets_text)
    atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return manifest


@dataclass
class ProbeSet:
    docs: list[dict]
    targets: list[dict]
    manifest: dict
    hash: str  # recomputed from the two files (must equal manifest["probe_set_hash"])

    @classmethod
    def load(cls, directory: Union[str, Path]) -> "ProbeSet":
        d = Path(directory)
        for name in (DOCS, TARGETS, MANIFEST):
            if not (d / name).is_file():
                raise FileNotFoundError(f"{d / name}: missing (python -m tokengap.analysis probes generate --out {d})")
        docs_bytes, targets_bytes = (d / DOCS).read_bytes(), (d / TARGETS).read_bytes()
        manifest = json.loads((d / MANIFEST).read_text())
        h = sha256_bytes(docs_bytes, targets_bytes)
        if h != manifest.get("probe_set_hash"):
            raise ValueError(f"{d}: files do not match manifest.json (hash {h[:16]}… vs "
                             f"{str(manifest.get('probe_set_hash'))[:16]}…); regenerate the probe set")
        return cls(read_jsonl(d / DOCS), read_jsonl(d / TARGETS), manifest, h)

    def axis(self, probe: str) -> str:
        return self.manifest["probes"][probe]["axis"]
