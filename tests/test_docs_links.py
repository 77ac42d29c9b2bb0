"""Every relative link in the project's documents resolves inside the repository, and none points outside it."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "RESULTS.md", "BENCHMARKS.md", *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("docs/*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def links(text: str) -> list[str]:
    """Relative targets of markdown links (no URL, no pure #anchor), without their #fragment."""
    out = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        out.append(target.split("#")[0])
    return out


def test_the_link_finder_sees_relative_links_only():
    assert links("[a](docs/x.md#y) [b](https://x.org) [c](#here) [d](../z.png)") == ["docs/x.md", "../z.png"]


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_resolve_inside_the_repository(doc):
    path = ROOT / doc
    text = path.read_text(encoding="utf-8")
    assert "../shared" not in text, f"{doc} points into ../shared, which a reader of the project does not have"
    for target in links(text):
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{doc}: {target} points outside the repository"
        assert resolved.exists(), f"{doc}: {target} does not exist"
