"""The floors of the house: models imports none of the others; evaluation (the layer that training and the analysis
share) imports only models; train and analysis never import each other. Every import statement counts, those inside
functions too (read from the source, not from what happens to be loaded)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "evaluation", "train", "analysis")
# package -> the packages of ours it may import
ALLOWED = {"models": set(), "evaluation": {"models"}, "train": {"models", "evaluation"},
           "analysis": {"models", "evaluation"}}


def imports_of(path: Path, package: str) -> set[str]:
    """Top-level names of every module an import statement in `path` names (relative imports: `package`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(package if node.level else (node.module or "").split(".")[0])
    return names


def violations(package: str, root: Path = ROOT) -> list[str]:
    out = []
    for f in sorted((root / package).rglob("*.py")):
        bad = (imports_of(f, package) & set(PACKAGES)) - ALLOWED[package] - {package}
        out += [f"{f.relative_to(root)} imports {b}" for b in sorted(bad)]
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_the_floors_below(package):
    assert violations(package) == []


def test_the_check_sees_imports_inside_functions(tmp_path):
    """The checker itself can fail: function-level imports of train and analysis in a models file are reported."""
    fake = tmp_path / "models" / "sneaky.py"
    fake.parent.mkdir()
    fake.write_text("from . import lm\ndef f():\n    from train.loop import Trainer\n    import analysis.compare\n")
    assert violations("models", tmp_path) == ["models/sneaky.py imports analysis", "models/sneaky.py imports train"]
