"""The floors of the house: tokengap.models imports none of the others; tokengap.evaluation (the layer that
training and the analysis share) imports only models; tokengap.train and tokengap.analysis never import each other.
Every import statement counts, those inside functions too (read from the source, not from what happens to be loaded).
The old top-level names (`models`, `train`, ...) are never imported: in a user's project they are the user's."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP = "tokengap"
PACKAGES = ("models", "evaluation", "train", "analysis")  # tokengap.<package>
# package -> the packages of ours it may import
ALLOWED = {"models": set(), "evaluation": {"models"}, "train": {"models", "evaluation"},
           "analysis": {"models", "evaluation"}}


def _module_parts(path: Path, root: Path) -> list[str]:
    """`tokengap/models/ops/x.py` -> ["tokengap", "models", "ops", "x"] (a package's __init__: the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """What every import statement in `path` names: "models" etc. for tokengap.<package>, "tokengap" for the top
    package itself, `bare:<name>` for an old top-level name; relative imports resolved against the file's place.
    Other modules (stdlib, torch, ...) are left out."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = _module_parts(path, root)
    pkg = here if path.name == "__init__.py" else here[:-1]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(pkg[:len(pkg) - (node.level - 1)]) if node.level else ""
            mod = ".".join(x for x in (base, node.module) if x)
            # `from tokengap import models`: the names are the modules
            mods = [f"{mod}.{a.name}" for a in node.names] if mod == TOP else [mod]
        else:
            continue
        for m in mods:
            parts = m.split(".")
            if parts[0] == TOP:
                names.add(parts[1] if len(parts) > 1 else TOP)
            elif parts[0] in PACKAGES:
                names.add(f"bare:{parts[0]}")
    return names


def violations(package: str, root: Path = ROOT) -> list[str]:
    out = []
    for f in sorted((root / TOP / package).rglob("*.py")):
        bad = {n for n in imports_of(f, root)
               if n.startswith("bare:") or (n in PACKAGES and n != package and n not in ALLOWED[package])}
        out += [f"{f.relative_to(root)} imports {b}" for b in sorted(bad)]
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_the_floors_below(package):
    assert violations(package) == []


def test_the_check_sees_imports_inside_functions(tmp_path):
    """The checker itself can fail: function-level imports of train and analysis in a models file are reported, and
    so are relative imports that climb out of the package and the old top-level names."""
    fake = tmp_path / TOP / "models" / "sneaky.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from . import lm\nfrom .ops import x\ndef f():\n    from tokengap.train.loop import Trainer\n"
                    "    import tokengap.analysis.compare\n    from ..evaluation import scoring\n"
                    "    from .. import train\n    import models.lm\n")
    assert violations("models", tmp_path) == [
        "tokengap/models/sneaky.py imports analysis", "tokengap/models/sneaky.py imports bare:models",
        "tokengap/models/sneaky.py imports evaluation", "tokengap/models/sneaky.py imports train"]
