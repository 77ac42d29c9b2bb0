"""The run campaign: a committed ledger of every planned reproduction run (results/campaign.yaml), the command
that trains the next missing runs on the GPU machine within a time budget, and the one that takes what came back
into results/ with its ledger entry.

    on the GPU machine, from the tree's root (.whl and .carry carried; README, "The run campaign"):
        TOKENGAP_CODE_VERSION=<commit> python3 -m scripts.campaign next --budget 560 [--only RUN ...]
    here:
        python -m scripts.campaign ingest DIR     DIR/<run>.tar.gz -> results/, one ledger entry each
        python -m scripts.campaign status         every planned run: done (code, GPU, date, ...) or missing

`next` runs `scripts/reproduce_gpu.sh SEED ARCH` for each planned run that has no ledger entry and did not
already finish on this machine, in the ledger's order, starting one only while the budget left holds the time a
run of that architecture took before (else 480 s); the run's packed results land in $OUT/<run>.tar.gz. A run cut
off at the budget keeps its checkpoints under runs/ (kept between calls on a warm machine): the next `next` on the
same machine resumes it. A newcomer reruns any single run with `bash scripts/reproduce_gpu.sh SEED ARCH`.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

from tokengap.analysis.labels import load_filters
from tokengap.evaluation.scorefile import ScoreFileError, code_version, load_scores
from tokengap.models.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
LEDGER = ROOT / "results" / "campaign.yaml"
REPRODUCE = ["bash", "scripts/reproduce_gpu.sh"]  # + SEED ARCH
DEFAULT_RUN_S = 480.0  # a preset=small run from a fresh H200, corpus unpack and scoring included (7.5 min)


class CampaignError(Exception):
    """Bad input to a campaign command, in one line naming the culprit (exit status 2)."""


def split_run(run: str) -> tuple[str, int]:
    """'hybrid_gdn-s0' -> ('hybrid_gdn', 0)."""
    arch, _, seed = run.rpartition("-s")
    if not arch or not seed.isdigit():
        raise CampaignError(f"run name {run!r}: expected <arch>-s<seed>, e.g. hybrid_gdn-s0")
    return arch, int(seed)


def load_ledger(path: Path = LEDGER) -> dict:
    """{'planned': [{'run', 'issue'}...], 'runs': {run: entry}}, checked."""
    try:
        led = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CampaignError(f"{path}: no ledger here") from None
    except yaml.YAMLError as exc:
        raise CampaignError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(led, dict) or not isinstance(led.get("planned"), list):
        raise CampaignError(f"{path}: expected a mapping with a 'planned' list")
    led["runs"] = led.get("runs") or {}
    led["gdn_backward"] = led.get("gdn_backward") or {"status": "pending"}
    if led["gdn_backward"].get("status") not in ("pending", "passed"):
        raise CampaignError(f"{path}: gdn_backward.status: expected pending or passed, got "
                            f"{led['gdn_backward'].get('status')!r}")
    for p in led["planned"]:
        split_run(p["run"])
    return led


def save_ledger(led: dict, path: Path = LEDGER) -> None:
    head = ("# The run campaign (preset=small, scripts/reproduce_gpu.sh): every planned run in the order they run,\n"
            "# and for each that exists what it measured. `planned` is edited by hand; `runs` is written by\n"
            "# `python -m scripts.campaign ingest` from the run's committed files (results/runs/<run>/).\n"
            "# `gdn_backward` (edited by hand): `passed` once `python -m scripts.gpu_check --only gdn` passes every row on\n"
            "# the GPU with its log committed; until then `next` skips every run with GDN layers (#27 section 1).\n")
    body = yaml.safe_dump({"gdn_backward": led.get("gdn_backward") or {"status": "pending"}, "planned": led["planned"],
                           "runs": dict(sorted(led["runs"].items()))}, sort_keys=False, width=120,
                          default_flow_style=None)
    atomic_write_text(path, head + body)


def missing(led: dict, runs_dir: Path | None = None, only: list[str] | None = None) -> list[str]:
    """The planned runs still to do, in order: no ledger entry, and (on the GPU machine) not packed already in an
    earlier call (runs_dir/<run>/packed)."""
    names = [p["run"] for p in led["planned"]]
    if only:
        unknown = [r for r in only if r not in names]
        if unknown:
            raise CampaignError(f"--only {unknown[0]}: not a planned run of the ledger")
        names = [r for r in names if r in only]
    done_here = {r for r in names if runs_dir is not None and (runs_dir / r / "packed").is_file()}
    return [r for r in names if r not in led["runs"] and r not in done_here]


def estimate_s(led: dict, run: str) -> float:
    """Seconds a run of this architecture took before (the longest), else of any run, else DEFAULT_RUN_S."""
    arch = split_run(run)[0]
    walls = {r: e.get("wall_s") for r, e in led["runs"].items() if e.get("wall_s")}
    same = [w for r, w in walls.items() if split_run(r)[0] == arch]
    return float(max(same or walls.values() or [DEFAULT_RUN_S]))


def entry(run: str, results: Path) -> dict:
    """A ledger entry from a run's files under results/: its code version, GPU, date, wall time, training
    throughput and final (annealed) eval loss."""
    rdir = results / "runs" / run
    try:
        summ = json.loads((rdir / "summary.json").read_text())
    except (OSError, ValueError) as exc:
        raise CampaignError(f"{rdir / 'summary.json'}: unreadable ({type(exc).__name__})") from None
    gpu = json.loads((rdir / "gpu.json").read_text()) if (rdir / "gpu.json").is_file() else {}
    meta = load_scores(results / "scores" / f"{run}.npz").meta
    final = None
    for line in (results / "curves" / f"{run}.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("kind") == "eval" and r.get("step") == summ["steps"] and "eval/all" in r:
            final = r["eval/all"]
    return {"code": gpu.get("code_version") or meta.get("code_version", "unknown"),
            "gpu": gpu.get("gpu") or summ.get("device_name"),
            "date": (gpu.get("date") or meta.get("date", ""))[:10],
            "wall_s": round(gpu["wall_s"]) if gpu.get("wall_s") else None,
            "train_wall_s": round(summ["wall_seconds"]),
            "train_tokens_per_s": round(summ["train_tokens_per_s"]),
            "final_eval_loss": round(final, 4) if final is not None else None}


def ingest(src: Path, results: Path, led: dict, overwrite: bool = False) -> list[str]:
    """Unpack every <run>.tar.gz in src into results/ and enter the run in the ledger. Refused in one line, before
    anything is written: a run the ledger does not plan, a run already entered (without overwrite), a member outside
    the run's own results paths, a score file of another eval set (named, with both hashes)."""
    tars = sorted(Path(src).glob("*.tar.gz"))
    if not tars:
        raise CampaignError(f"{src}: no <run>.tar.gz here")
    want = load_filters(results / "filters.npz")[1]
    planned = {p["run"] for p in led["planned"]}
    staged = []
    with tempfile.TemporaryDirectory() as tmp:
        for t in tars:
            run = t.name.removesuffix(".tar.gz")
            if run not in planned:
                raise CampaignError(f"{t}: {run} is not a planned run of the ledger")
            if run in led["runs"] and not overwrite:
                raise CampaignError(f"{t}: {run} is in the ledger already (--overwrite replaces it)")
            dest = Path(tmp) / run
            with tarfile.open(t) as tf:
                for m in tf.getmembers():  # the run's own files under results/, and folders there
                    inside = (m.name == "results" or m.name.startswith("results/")) and ".." not in m.name
                    if not inside or not (m.isdir() or (m.isfile() and run in m.name)):
                        raise CampaignError(f"{t}: unexpected member {m.name!r}")
                tf.extractall(dest, filter="data")
            for npz in sorted((dest / "results" / "scores").rglob("*.npz")):
                try:
                    got = load_scores(npz).meta.get("eval_hash")
                except ScoreFileError as exc:
                    raise CampaignError(str(exc)) from None
                if got != want:
                    raise CampaignError(f"{t}: {npz.relative_to(dest)} scores another eval set (eval_hash "
                                        f"{str(got)[:16]}… vs results/filters.npz's {want[:16]}…)")
            staged.append((run, dest))
        for run, dest in staged:
            for f in sorted(p for p in (dest / "results").rglob("*") if p.is_file()):
                target = results / f.relative_to(dest / "results")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, target)
            led["runs"][run] = entry(run, results)
    return [r for r, _ in staged]


def status(led: dict, head: str) -> str:
    """One line per planned run (and per earlier run the plan does not list): done with its entry, or missing;
    a run of another code version than `head` says so."""
    lines = []
    settled = (led.get("gdn_backward") or {}).get("status") == "passed"
    waits = {r for r in missing(led) if not settled and uses_gdn(split_run(r)[0])}
    todo = [r for r in missing(led) if r not in waits]
    names = [p["run"] for p in led["planned"]]
    for run in names + [r for r in led["runs"] if r not in names]:
        e = led["runs"].get(run)
        if e is None:
            lines.append(f"{run:22} " + ("missing, waits for the GDN backward check (ledger gdn_backward)"
                                         if run in waits else "next" if todo and run == todo[0] else "missing"))
            continue
        code = e.get("code", "unknown")
        other = "" if code == head else f" (another code version than this checkout's {head})"
        lines.append(f"{run:22} done: code {code}{other}, {e.get('gpu')}, {e.get('date')}, "
                     f"wall {e.get('wall_s') or '?'} s, {e.get('train_tokens_per_s')} tok/s, "
                     f"eval loss {e.get('final_eval_loss')}")
    return "\n".join(lines)


def uses_gdn(arch: str) -> bool:
    """Whether the zoo model `arch` has Gated DeltaNet layers (its resolved layer pattern)."""
    from tokengap.models.__main__ import load

    return "gdn" in load([f"model={arch}", "size=small"]).layers()  # the campaign's size (preset=small)


def run_next(led: dict, budget: float, only: list[str] | None = None, partial: bool = False,
             root: Path = ROOT) -> int:
    """Train, score and pack the next missing runs while the budget lasts (see the module docstring); root: the
    tree's root (runs/ under it)."""
    if not os.environ.get("TOKENGAP_CODE_VERSION"):
        raise CampaignError("TOKENGAP_CODE_VERSION is not set: the GPU machine's copy has no .git, and every run "
                            "records its code (TOKENGAP_CODE_VERSION=$(git rev-parse --short HEAD) here)")
    start = time.monotonic()
    todo = missing(led, root / "runs", only)
    print(f"campaign: {len(todo)} planned run(s) to do: {' '.join(todo) or '-'}", flush=True)
    gdn = led.get("gdn_backward") or {"status": "pending"}
    for run in todo:
        if gdn.get("status") != "passed" and uses_gdn(split_run(run)[0]):
            print(f"campaign: {run} skipped: the GDN backward is not settled on this GPU yet (ledger gdn_backward: "
                  f"{gdn.get('status')}{'; ' + gdn['why'] if gdn.get('why') else ''})", flush=True)
            continue
        left = budget - (time.monotonic() - start)
        need = estimate_s(led, run)
        if left < need and not partial:
            print(f"campaign: {run} not started: {left:.0f} s left, a run takes about {need:.0f} s "
                  "(--partial starts it anyway; it resumes on the next call on this machine)", flush=True)
            return 0
        arch, seed = split_run(run)
        print(f"campaign: {run} ({left:.0f} s left)", flush=True)
        t0 = time.monotonic()
        # its own process group, so that the budget stops the training and scoring under the script too
        proc = subprocess.Popen([*REPRODUCE, str(seed), arch], cwd=root,
                                start_new_session=True)  # packs into $OUT (`pack` below) when OUT is set
        try:
            rc = proc.wait(timeout=max(left, 1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            wall = root / "runs" / run / "wall_s"  # reproduce_gpu.sh adds the calls that resume it
            if wall.parent.is_dir():
                prev = int(wall.read_text()) if wall.is_file() else 0
                wall.write_text(str(prev + round(time.monotonic() - t0)))
            print(f"campaign: {run} cut off at the budget; its checkpoints are under runs/{run}: the next call "
                  "on this machine resumes it", flush=True)
            return 0
        if rc != 0:
            print(f"campaign: {run} failed (exit {rc})", flush=True)
            return rc
        (root / "runs" / run).mkdir(parents=True, exist_ok=True)
        (root / "runs" / run / "packed").write_text(datetime.datetime.now(datetime.timezone.utc).isoformat())
    return 0


def pack(run: str, out: Path) -> Path:
    """$OUT/<run>.tar.gz: the run's score files (final and annealed), probes, curve and run files."""
    res = ROOT / "results"
    members = [res / "scores" / f"{run}.npz", res / "probes" / f"{run}.npz", res / "probes" / "planted" / f"{run}.npz",
               res / "curves" / f"{run}.jsonl", res / "runs" / run,
               *sorted((res / "scores" / "annealed").glob(f"{run}-step*.npz"))]
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{run}.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            tf.add(m, arcname=str(m.relative_to(ROOT)))
    print(f"campaign: packed {path} ({path.stat().st_size / 2**20:.1f} MiB)", flush=True)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.campaign", description=__doc__.split("\n\n")[0])
    ap.add_argument("--ledger", type=Path, default=LEDGER)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("next", help="on the GPU machine: train the next missing runs within --budget seconds")
    p.add_argument("--budget", type=float, required=True)
    p.add_argument("--only", nargs="+", default=None, metavar="RUN")
    p.add_argument("--partial", action="store_true", help="start a run even if it may not finish in the budget")
    p = sub.add_parser("ingest", help="here: DIR/<run>.tar.gz -> results/ and the ledger")
    p.add_argument("dir", type=Path)
    p.add_argument("--overwrite", action="store_true")
    sub.add_parser("status", help="every planned run: done or missing")
    p = sub.add_parser("pack", help="on the GPU machine: a finished run's results -> $OUT/<run>.tar.gz")
    p.add_argument("run")
    args = ap.parse_args(argv)
    try:
        led = load_ledger(args.ledger)
        if args.cmd == "next":
            return run_next(led, args.budget, args.only, args.partial)
        if args.cmd == "pack":
            if not os.environ.get("OUT"):
                raise CampaignError("pack: OUT is not set (the folder whose files come back from the GPU machine)")
            split_run(args.run)  # a run name, or the one-line error
            pack(args.run, Path(os.environ["OUT"]))
            return 0
        if args.cmd == "ingest":
            done = ingest(args.dir, args.ledger.parent, led, args.overwrite)
            save_ledger(led, args.ledger)
            print(f"ingested {', '.join(done)}; ledger {args.ledger} updated")
        print(status(led, code_version().removesuffix("-dirty")))
        return 0
    except CampaignError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
