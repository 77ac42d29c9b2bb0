"""Selection, eval split and duplicate checks on small synthetic documents (no downloads)."""
import random

import pytest

from tokengap.train.data.collect import split_long
from tokengap.train.data.config import DataConfig
from tokengap.train.data.split import (NgramIndex, allocate, dedup_exact, drop_near_duplicates, nbytes, select,
                                       split_eval, take_bytes)

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()


def text(seed: int, n_words: int = 300) -> str:
    r = random.Random(seed)
    return " ".join(r.choice(WORDS) + str(r.randrange(50)) for _ in range(n_words))


def doc(i: int, domain: str = "books", source: str = "s1", t: str | None = None) -> dict:
    return {"id": f"{domain}/{source}/d{i}/0000", "domain": domain, "source": source, "text": t or text(i)}


def test_dedup_exact_ignores_whitespace_and_keeps_the_first():
    docs = [doc(1, t="a  b\nc"), doc(2, source="s2", t="a b c"), doc(3, t="a b d")]
    kept, dropped = dedup_exact(docs)
    assert [d["id"] for d in kept] == [docs[0]["id"], docs[2]["id"]] and dropped == {"s2": 1}


def test_allocate_water_fills_under_the_budget():
    assert allocate({"a": 10, "b": 20}, 100) == {"a": 10, "b": 20}
    assert allocate({"small": 10, "big1": 500, "big2": 500}, 110) == {"small": 10, "big1": 50, "big2": 50}
    assert sum(allocate({"a": 7, "b": 9, "c": 1000}, 20).values()) <= 20


def test_take_bytes_is_seeded_and_within_limit():
    docs = [doc(i) for i in range(50)]
    a, b = take_bytes(docs, 10_000, seed=1), take_bytes(list(reversed(docs)), 10_000, seed=1)
    assert {d["id"] for d in a} == {d["id"] for d in b}
    assert sum(map(nbytes, a)) <= 10_000 and sum(map(nbytes, a)) > 8_000


def test_select_caps_one_source_in_its_domain():
    docs = [doc(i, source="huge") for i in range(200)] + [doc(1000 + i, source="small") for i in range(5)]
    cfg = DataConfig(domain_mb={"books": 0.1}, max_source_share=0.5)
    kept, alloc = select(docs, cfg)
    huge = sum(nbytes(d) for d in kept if d["source"] == "huge")
    assert huge <= 50_000 and alloc["small"] == sum(nbytes(d) for d in docs if d["source"] == "small")


def test_split_eval_takes_whole_documents_balanced_over_domains():
    docs = [doc(i, domain=dom, source=f"{dom}-{i % 3}") for dom in ("books", "c", "news") for i in range(100)]
    train, held = split_eval(docs, eval_tokens=3000, max_doc_tokens=2000, seed=7)
    assert {d["id"] for d in train}.isdisjoint(d["id"] for d in held)
    assert len(train) + len(held) == len(docs)
    originals = {d["id"]: d["text"] for d in docs}
    assert all(originals[d["id"]] == d["text"] for d in held)  # whole documents, untouched
    per_domain = {dom: sum(1 for d in held if d["domain"] == dom) for dom in ("books", "c", "news")}
    assert min(per_domain.values()) >= 2
    assert len({d["source"] for d in held if d["domain"] == "books"}) == 3  # round-robin over sources
    again = split_eval(list(reversed(docs)), eval_tokens=3000, max_doc_tokens=2000, seed=7)[1]
    assert sorted(d["id"] for d in again) == sorted(d["id"] for d in held)


def test_near_duplicates_of_eval_documents_are_dropped_from_train():
    held = [doc(1, domain="news"), doc(2, domain="news")]
    words = held[0]["text"].split()
    words[::40] = ["changed"] * len(words[::40])  # ~1 word in 40 edited: about 2/3 of the 13-grams survive
    lightly_edited = " ".join(words) + " a new ending"
    copied_paragraph = text(99) + " " + " ".join(held[1]["text"].split()[:20]) + " " + text(98)
    train = [doc(10, t=lightly_edited), doc(11, t=copied_paragraph), doc(12)]
    kept, stats = drop_near_duplicates(train, held, threshold=0.5)
    assert [d["id"] for d in kept] == [train[1]["id"], train[2]["id"]]
    assert stats["near_dup_train_docs_dropped"] == {"books": 1}
    assert 0 < stats["eval_13grams_seen_in_train"]["news"] < 0.1  # the 20 copied words: 8 shared 13-grams


def test_ngram_index_counts_13grams():
    idx = NgramIndex([doc(1, t=" ".join(f"w{i}" for i in range(20)))])
    assert len(idx.grams) == 8
    n, hits = idx.overlap(" ".join(f"w{i}" for i in range(5, 18)) + " other words here")
    assert n == 4 and len(hits) == 1


@pytest.mark.parametrize("max_chars", [50, 200, 1000])
def test_split_long_cuts_at_paragraphs_and_loses_nothing(max_chars):
    t = "\n\n".join(text(i, n_words=i % 40 + 1) for i in range(30))
    parts = split_long(t, max_chars)
    assert "".join(parts) == t and all(len(p) <= max_chars for p in parts)


def test_a_hand_edited_extraction_cache_is_extracted_again_and_said(tmp_path, capsys):
    """The extraction cache is read only while it matches the sha256 recorded when it was written: a cache edited
    by hand would build a different corpus without a word, so it is extracted again and the log says why."""
    from tokengap.train.data.collect import extracted
    from tokengap.train.data.sources import Source
    calls = []

    def extract(path):
        calls.append(path)
        return [("b", "second text"), ("a", "first text")]
    src = Source("toy", "books", "pypi", "toy", "1.0", extract)
    first = extracted(src, tmp_path / "pkg.whl", "ab" * 32, tmp_path)
    assert first == [("a", "first text"), ("b", "second text")] and len(calls) == 1
    assert extracted(src, tmp_path / "pkg.whl", "ab" * 32, tmp_path) == first and len(calls) == 1  # from the cache
    cache = next((tmp_path / "extracted").glob("toy-*.jsonl"))
    cache.write_text(cache.read_text().replace("first text", "edited text"))
    assert extracted(src, tmp_path / "pkg.whl", "ab" * 32, tmp_path) == first and len(calls) == 2
    assert "was changed since it was written; extracting again" in capsys.readouterr().out
    assert extracted(src, tmp_path / "pkg.whl", "ab" * 32, tmp_path) == first and len(calls) == 2  # restored
