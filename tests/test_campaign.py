"""The run campaign's ledger (scripts/campaign.py): the next missing run, finished runs skipped, another code
version reported, the budget honoured, and ingest refusing a score file of another eval set by name."""
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tokengap.evaluation.scorefile import save_scores
from scripts import campaign
from scripts.campaign import CampaignError

HASH = "ab" * 32


def _ledger(tmp_path, runs=None, gdn="passed"):
    led = {"planned": [{"run": "transformer_swa-s0", "issue": 27}, {"run": "hybrid_gdn-s0", "issue": 27},
                       {"run": "recurrent_gdn-s0", "issue": 27}], "runs": runs or {}, "gdn_backward": {"status": gdn}}
    (tmp_path / "results").mkdir(exist_ok=True)
    path = tmp_path / "results" / "campaign.yaml"
    campaign.save_ledger(led, path)
    return path


def test_the_ledger_is_read_and_the_next_missing_run_chosen_in_order(tmp_path):
    path = _ledger(tmp_path, runs={"transformer_swa-s0": {"code": "abc1234", "wall_s": 400}})
    led = campaign.load_ledger(path)
    assert campaign.missing(led) == ["hybrid_gdn-s0", "recurrent_gdn-s0"]
    assert campaign.missing(led, only=["recurrent_gdn-s0"]) == ["recurrent_gdn-s0"]
    with pytest.raises(CampaignError, match="--only hybrid-s9: not a planned run"):
        campaign.missing(led, only=["hybrid-s9"])
    assert "hybrid_gdn-s0          next" in campaign.status(led, "abc1234")


def test_a_run_finished_on_this_machine_is_skipped(tmp_path):
    led = campaign.load_ledger(_ledger(tmp_path))
    (tmp_path / "runs" / "transformer_swa-s0").mkdir(parents=True)
    (tmp_path / "runs" / "transformer_swa-s0" / "packed").write_text("x")
    assert campaign.missing(led, tmp_path / "runs") == ["hybrid_gdn-s0", "recurrent_gdn-s0"]


def test_a_run_of_another_code_version_is_reported_as_such(tmp_path):
    led = campaign.load_ledger(_ledger(tmp_path, runs={"transformer_swa-s0": {"code": "abc1234"},
                                                       "hybrid_gdn-s0": {"code": "def5678"}}))
    lines = dict(line.split(maxsplit=1) for line in campaign.status(led, "def5678").splitlines())
    assert "another code version than this checkout's def5678" in lines["transformer_swa-s0"]
    assert "another code version" not in lines["hybrid_gdn-s0"]
    assert lines["recurrent_gdn-s0"] == "next"


def test_bad_ledgers_and_run_names_are_one_line_errors(tmp_path):
    (tmp_path / "l.yaml").write_text("planned: [{run: hybrid}]\n")
    with pytest.raises(CampaignError, match="run name 'hybrid': expected <arch>-s<seed>"):
        campaign.load_ledger(tmp_path / "l.yaml")
    (tmp_path / "l.yaml").write_text("planned: [\n")
    with pytest.raises(CampaignError, match="not valid YAML"):
        campaign.load_ledger(tmp_path / "l.yaml")
    with pytest.raises(CampaignError, match="no ledger here"):
        campaign.load_ledger(tmp_path / "none.yaml")


def _packed_run(tmp_path, run, eval_hash):
    """A run's results as `pack` writes them, in tmp_path/src/<run>.tar.gz."""
    src = tmp_path / "build" / run
    res = src / "results"
    for d in ("scores/annealed", "curves", f"runs/{run}", "probes"):
        (res / d).mkdir(parents=True, exist_ok=True)
    meta = {"eval_hash": eval_hash, "code_version": "abc1234", "date": "2026-12-07T10:00:00+00:00"}
    save_scores(res / "scores" / f"{run}.npz", np.full(10, 2.5, np.float32), np.zeros(10, bool), meta)
    save_scores(res / "scores" / "annealed" / f"{run}-step686.npz", np.full(10, 3.0, np.float32), np.zeros(10, bool), meta)
    (res / "curves" / f"{run}.jsonl").write_text(
        json.dumps({"kind": "eval", "step": 100, "eval/all": 2.7}) + "\n" +
        json.dumps({"kind": "eval", "step": 200, "eval/all": 2.51234, "annealed": True}) + "\n")
    (res / "runs" / run / "summary.json").write_text(json.dumps(
        {"steps": 200, "wall_seconds": 300.4, "train_tokens_per_s": 700000.2, "device_name": "NVIDIA H100"}))
    (res / "runs" / run / "gpu.json").write_text(json.dumps(
        {"gpu": "NVIDIA H100 80GB HBM3", "code_version": "abc1234", "wall_s": 401, "date": "2026-12-07T10:05:00+00:00"}))
    out = tmp_path / "src"
    out.mkdir(exist_ok=True)
    with tarfile.open(out / f"{run}.tar.gz", "w:gz") as tf:
        tf.add(res, arcname="results")
    return out


def test_ingest_enters_the_run_and_refuses_another_eval_set_by_name(tmp_path):
    path = _ledger(tmp_path)
    np.savez(tmp_path / "results" / "filters.npz", eval_hash=np.str_(HASH), all=np.ones(10, bool))
    led = campaign.load_ledger(path)
    bad = _packed_run(tmp_path, "hybrid_gdn-s0", "cd" * 32)
    with pytest.raises(CampaignError, match=r"results/scores/(annealed/)?hybrid_gdn-s0.*another eval set.*cdcdcd"):
        campaign.ingest(bad, tmp_path / "results", led)
    assert not (tmp_path / "results" / "scores").exists() and led["runs"] == {}  # nothing written
    (bad / "hybrid_gdn-s0.tar.gz").unlink()
    good = _packed_run(tmp_path, "transformer_swa-s0", HASH)
    assert campaign.ingest(good, tmp_path / "results", led) == ["transformer_swa-s0"]
    e = led["runs"]["transformer_swa-s0"]
    assert e == {"code": "abc1234", "gpu": "NVIDIA H100 80GB HBM3", "date": "2026-12-07", "wall_s": 401,
                 "train_wall_s": 300, "train_tokens_per_s": 700000, "final_eval_loss": 2.5123}
    assert (tmp_path / "results" / "scores" / "annealed" / "transformer_swa-s0-step686.npz").is_file()
    with pytest.raises(CampaignError, match="in the ledger already"):
        campaign.ingest(good, tmp_path / "results", led)


def test_next_honours_the_budget_and_a_cut_off_run_keeps_its_time(tmp_path, monkeypatch):
    led = campaign.load_ledger(_ledger(tmp_path))
    monkeypatch.setenv("TOKENGAP_CODE_VERSION", "abc1234")
    script = tmp_path / "fake.sh"  # SEED ARCH: a run that finishes at once, or (recurrent_gdn) never
    script.write_text('mkdir -p runs/$2-s$1; [ "$2" = recurrent_gdn ] && sleep 60; echo ok > runs/$2-s$1/done\n')
    monkeypatch.setattr(campaign, "REPRODUCE", ["bash", str(script)])
    monkeypatch.setattr(campaign, "DEFAULT_RUN_S", 0.0)
    assert campaign.run_next(led, budget=3, root=tmp_path) == 0
    runs = tmp_path / "runs"
    assert (runs / "transformer_swa-s0" / "packed").is_file() and (runs / "hybrid_gdn-s0" / "packed").is_file()
    assert not (runs / "recurrent_gdn-s0" / "packed").exists()  # cut off at the budget
    assert int((runs / "recurrent_gdn-s0" / "wall_s").read_text()) >= 2
    monkeypatch.setattr(campaign, "DEFAULT_RUN_S", 100.0)  # a run would not fit: not started
    assert campaign.run_next(led, budget=3, root=tmp_path) == 0
    assert int((runs / "recurrent_gdn-s0" / "wall_s").read_text()) < 6


def test_next_refuses_without_a_code_version(tmp_path, monkeypatch):
    monkeypatch.delenv("TOKENGAP_CODE_VERSION", raising=False)
    with pytest.raises(CampaignError, match="TOKENGAP_CODE_VERSION is not set"):
        campaign.run_next(campaign.load_ledger(_ledger(tmp_path)), budget=10, root=tmp_path)


def test_the_committed_ledger_plans_the_sixteen_runs_of_the_campaign():
    led = campaign.load_ledger()
    planned = [p["run"] for p in led["planned"]]
    assert len(planned) == len(set(planned)) == 16
    assert planned[:3] == ["transformer_swa-s0", "hybrid_gdn-s0", "recurrent_gdn-s0"]
    for run, e in led["runs"].items():  # every entry stands on committed files
        assert Path("results/runs", run, "summary.json").is_file() and Path("results/curves", f"{run}.jsonl").is_file(), run


def test_next_skips_gdn_runs_until_the_gdn_backward_is_settled(tmp_path, monkeypatch, capsys):
    """#27 section 1: no GDN run is trained before gpu_check passes; the runs without GDN layers go on meanwhile."""
    monkeypatch.setenv("TOKENGAP_CODE_VERSION", "abc1234")
    script = tmp_path / "fake.sh"
    script.write_text('mkdir -p runs/$2-s$1; echo ok > runs/$2-s$1/done\n')
    monkeypatch.setattr(campaign, "REPRODUCE", ["bash", str(script)])
    monkeypatch.setattr(campaign, "DEFAULT_RUN_S", 0.0)
    led = campaign.load_ledger(_ledger(tmp_path, gdn="pending"))
    led["planned"].append({"run": "transformer-s2", "issue": 32})
    assert campaign.run_next(led, budget=30, root=tmp_path) == 0
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["transformer-s2", "transformer_swa-s0"]
    out = capsys.readouterr().out
    assert "hybrid_gdn-s0 skipped: the GDN backward is not settled" in out and "recurrent_gdn-s0 skipped" in out
    led["gdn_backward"] = {"status": "passed"}
    assert campaign.run_next(led, budget=30, root=tmp_path) == 0
    assert (runs / "hybrid_gdn-s0" / "packed").is_file() and (runs / "recurrent_gdn-s0" / "packed").is_file()
    assert campaign.uses_gdn("sweep_gdn_a4") and not campaign.uses_gdn("hybrid")
    saved = tmp_path / "results" / "again.yaml"
    campaign.save_ledger(led, saved)
    assert campaign.load_ledger(saved)["gdn_backward"] == {"status": "passed"}
    led["gdn_backward"] = {"status": "maybe"}
    campaign.save_ledger(led, saved)
    with pytest.raises(CampaignError, match="gdn_backward.status: expected pending or passed, got 'maybe'"):
        campaign.load_ledger(saved)
