"""The installed package is `tokengap` alone: a wheel of this checkout, installed into a folder of its own, imports
and builds a model from its own configs in a project that has its own `models.py`, `train.py` and `evaluation/`
(decoys that raise if imported), with the checkout itself not importable. Offline: the wheel is built with the
venv's setuptools (no build isolation, no index) from a copy of the sources, so the checkout gets no build/."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DECOY = "raise ImportError('decoy {name}: the user project\\'s own module was imported')\n"

CHECK = textwrap.dedent("""
    import json, pkgutil, sys
    from pathlib import Path
    import tokengap, tokengap.models, tokengap.analysis, tokengap.train, tokengap.evaluation
    from tokengap.models import LM, ModelConfig
    from tokengap.models.__main__ import load
    from tokengap.models.config import CONF_DIR
    from tokengap.train.config import load_run_config
    from tokengap.train.data.config import load_config
    from tokengap.train.data.fetch import LOCK_PATH
    import torch

    failed = {}  # every module of the package imports (the decoys raise if any of it imports a bare name)
    for m in pkgutil.walk_packages(tokengap.__path__, "tokengap."):
        try:
            __import__(m.name)
        except Exception as exc:
            failed[m.name] = f"{type(exc).__name__}: {exc}"
    cfg = load(["model=hybrid", "size=tiny"])
    cfg.vocab_size = 64
    model = LM(cfg)
    loss = model(torch.randint(0, 64, (2, 16)), torch.randint(0, 64, (2, 16)))
    run = load_run_config(["model=hybrid_gdn", "data=tiny"])
    print(json.dumps({
        "tokengap": tokengap.__file__, "models": tokengap.models.__file__, "version": tokengap.__version__,
        "conf_dir": str(CONF_DIR), "model_yamls": sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml")),
        "layers": cfg.layers(), "loss": float(loss), "run_model": run.model.name, "run_data": run.data.mix,
        "data_mix": load_config("small").mix, "lock": str(LOCK_PATH), "lock_exists": LOCK_PATH.is_file(),
        "failed": failed, "bare": sorted(n for n in ("models", "train", "evaluation", "analysis") if n in sys.modules),
        "path": sys.path}))
""")


def _run(code: str, cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(PYTHONPATH=str(pythonpath), PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the --target folder a wheel of this checkout is installed in, the decoy project folder)."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for f in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / f, src / f)
    shutil.copytree(ROOT / "tokengap", src / "tokengap", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp / "dist"),
                    str(src)], check=True, capture_output=True, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("tokengap-*.whl")
    target = tmp / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, cwd=tmp)
    project = tmp / "project"
    (project / "evaluation").mkdir(parents=True)
    for name, path in (("models", "models.py"), ("train", "train.py"), ("evaluation", "evaluation/__init__.py")):
        (project / path).write_text(DECOY.format(name=name))
    return target, project


@pytest.mark.slow
def test_decoys_would_shadow_the_old_top_level_names(installed):
    """The check can fail: from the decoy project, a bare `import models` (or train, evaluation) gets the decoy."""
    target, project = installed
    for name in ("models", "train", "evaluation"):
        r = _run(f"import {name}", project, target)
        assert r.returncode != 0 and f"decoy {name}" in r.stderr, (name, r.stderr[-2000:])
    # with the wheel's folder first on the path, `tokengap` is the wheel's (not an editable install of a checkout,
    # which a development venv, CI's included, also has)
    r = _run("import tokengap; print(tokengap.__file__)", project, target)
    assert r.returncode == 0 and r.stdout.strip().startswith(str(target)), (r.stdout, r.stderr[-2000:])


@pytest.mark.slow
def test_the_installed_wheel_imports_and_builds_a_model_beside_decoys(installed):
    target, project = installed
    r = _run(CHECK, project, target)
    assert r.returncode == 0, r.stderr[-4000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert not any(Path(p).resolve() == ROOT for p in out["path"] if p), "the checkout is on sys.path"
    site = target.resolve()
    for key in ("tokengap", "models", "conf_dir", "lock"):
        assert Path(out[key]).resolve().is_relative_to(site), (key, out[key])
    assert Path(out["conf_dir"]).resolve() == site / "tokengap" / "conf"
    assert {"transformer", "hybrid", "recurrent", "hybrid_gdn"} <= set(out["model_yamls"])
    assert out["lock_exists"] and out["version"] != "0+unknown"
    assert out["failed"] == {} and out["bare"] == []
    assert "mamba2" in out["layers"] and "attention" in out["layers"] and 0 < out["loss"] < 20
    assert out["run_model"] == "hybrid_gdn" and out["run_data"] == "tiny" and out["data_mix"] == "small"
