"""The token viewer: eval documents as text, each token coloured by its loss gap between A and B.

One self-contained HTML page (no network, works from file://): a document picker, each token's background on a
diverging scale (blue: B predicts it better, red: A does; the scale is shown), its two losses and its labels
(POS, repetition and copy distance, delimiter, code/markup class, domain) on hover, a category filter that
highlights the tokens of one category and dims the rest, and each document's mean gap. The page embeds a sample of
documents (stratified by domain, `max_docs`, at most `max_tokens` tokens: about 50 bytes a token) so that it
loads in a second; `python -m tokengap.analysis pipeline --viewer-docs N` regenerates it with more.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from tokengap.models.atomic import atomic_write_text

# label columns shown on hover (when the labels have them), in this order
HOVER = ("ptb", "upos", "word_class", "pronoun", "proper_noun", "copy_dist", "delim_type", "delim_dir", "py_lex",
         "html_lex", "latex_lex")
REP_NS = (1, 2, 4, 8, 16)


def token_color(gap: float, scale: float) -> str:
    """The background of a token: white at 0, blue (B better, gap > 0) or red (A better) at |gap| >= scale. The
    page's JavaScript computes the same (COLOR in PAGE)."""
    t = max(-1.0, min(1.0, gap / scale)) if scale > 0 else 0.0
    if t >= 0:
        r, g, b = 255 - 180 * t, 255 - 110 * t, 255
    else:
        r, g, b = 255, 255 + 180 * t, 255 + 180 * t
    return f"rgb({round(r)},{round(g)},{round(b)})"


def categories(labels) -> list[tuple[str, str, np.ndarray]]:
    """(key, title, mask) of the filter's categories that the labels have."""
    cols = set(labels.columns)
    out = []

    def add(key, title, mask):
        if mask.any():
            out.append((key, title, mask))

    def eq(col, v):
        return labels[col].astype(str).to_numpy() == v

    if "word_class" in cols:
        for v, t in (("content", "content words"), ("function", "function words"), ("punct", "punctuation")):
            add(f"word_class={v}", t, eq("word_class", v))
    for col, t in (("pronoun", "pronouns"), ("proper_noun", "proper nouns")):
        if col in cols:
            add(col, t, labels[col].to_numpy().astype(bool))
    if "rep_4" in cols:
        add("rep_4", "repeated 4-gram", labels["rep_4"].to_numpy().astype(bool))
        add("novel_4", "not a repeated 4-gram", ~labels["rep_4"].to_numpy().astype(bool))
    if "delim_dir" in cols:
        lead = labels["delim_lead"].to_numpy().astype(bool) if "delim_lead" in cols else True
        add("delim=open", "opening delimiters", eq("delim_dir", "open") & lead)
        add("delim=close", "closing delimiters", eq("delim_dir", "close") & lead)
    for col, kinds in (("py_lex", ("identifier", "keyword", "string", "comment")),
                       ("html_lex", ("text", "attr_value", "tag")), ("latex_lex", ("command", "math"))):
        if col in cols:
            for k in kinds:
                add(f"{col}={k}", f"{col.split('_')[0]} {k.replace('_', ' ')}", eq(col, k))
    return out


def pick_docs(domains: Sequence[str], max_docs: int, seed: int = 0, lengths: Optional[Sequence[int]] = None,
              max_tokens: Optional[int] = None) -> list[int]:
    """Up to max_docs document indices (and, with lengths, at most max_tokens tokens in all; the first document
    always), round-robin over domains in order of first appearance, seeded."""
    rng = np.random.default_rng(seed)
    by_dom: dict[str, list[int]] = {}
    for i, d in enumerate(domains):
        by_dom.setdefault(d, []).append(i)
    for v in by_dom.values():
        rng.shuffle(v)
    picked, total = [], 0
    while len(picked) < max_docs and any(by_dom.values()):
        for d in list(by_dom):
            if not by_dom[d] or len(picked) >= max_docs:
                continue
            i = by_dom[d].pop()
            n = int(lengths[i]) if lengths is not None else 0
            if max_tokens is not None and picked and total + n > max_tokens:
                continue  # too long for what is left of the budget: a shorter one may still fit
            picked.append(i)
            total += n
    return sorted(picked)


def pieces(text: str, starts: np.ndarray) -> list[str]:
    """The document cut at each token's start offset: every character in exactly one piece, in order (a byte-
    level token inside a multi-byte character gets an empty piece)."""
    cuts = np.maximum.accumulate(np.clip(np.asarray(starts, dtype=np.int64), 0, len(text)))
    ends = np.append(cuts[1:], len(text))
    cuts[0] = 0
    return [text[a:b] for a, b in zip(cuts, ends)]


def viewer_data(ev, loss_a: np.ndarray, loss_b: np.ndarray, labels, names: tuple[str, str], max_docs: int = 60,
                seed: int = 0, scale: Optional[float] = None, max_tokens: int = 120_000) -> dict:
    """What the page embeds: the sampled documents (pieces, losses, label codes), the label vocabularies, the
    categories (per document, the token positions in each), the colour scale and the names."""
    gap = loss_a.astype(np.float64) - loss_b.astype(np.float64)
    if scale is None:  # the 98th percentile of |gap|: a few outliers must not wash out the rest
        scale = float(np.quantile(np.abs(gap), 0.98)) if gap.size else 1.0
    scale = max(scale, 1e-3)
    hover = [c for c in HOVER if c in labels.columns]
    vocab, codes = {}, {}
    from pandas.api.types import is_bool_dtype, is_numeric_dtype
    for c in hover:
        col = labels[c]
        if is_bool_dtype(col):
            codes[c] = col.to_numpy().astype(np.int8)
        elif is_numeric_dtype(col):
            codes[c] = col.to_numpy()
        else:
            values = col.astype(str).to_numpy()
            uniq, inv = np.unique(values, return_inverse=True)
            vocab[c], codes[c] = [str(u) for u in uniq], inv
    rep = np.zeros(len(gap), dtype=np.int8)  # the longest n whose n-gram repeats here
    for n in REP_NS:
        if f"rep_{n}" in labels.columns:
            rep[labels[f"rep_{n}"].to_numpy().astype(bool)] = n
    cats = categories(labels)
    chosen = pick_docs([d.get("domain", "") for d in ev.docs], max_docs, seed, np.diff(ev.doc_starts), max_tokens)
    docs = []
    for d in chosen:
        a, b = int(ev.doc_starts[d]), int(ev.doc_starts[d + 1])
        doc = ev.docs[d]
        docs.append({
            "id": doc["id"], "domain": doc.get("domain", ""), "source": doc.get("source", ""), "n": b - a,
            "mean_gap": round(float(gap[a:b].mean()), 4) if b > a else 0.0,
            "pieces": pieces(doc["text"], ev.offsets[a:b, 0]),
            "la": np.round(loss_a[a:b].astype(np.float64), 3).tolist(),
            "lb": np.round(loss_b[a:b].astype(np.float64), 3).tolist(),
            "rep": rep[a:b].tolist(),
            "lab": {c: codes[c][a:b].tolist() for c in hover},
            "cats": {k: np.flatnonzero(m[a:b]).tolist() for k, _, m in cats if m[a:b].any()},
        })
    return {"a": names[0], "b": names[1], "scale": round(scale, 4), "vocab": vocab, "hover": hover,
            "categories": [[k, t] for k, t, _ in cats], "docs": docs, "n_docs_total": len(ev.docs),
            "mean_gap_all": round(float(gap.mean()), 4) if gap.size else 0.0}


PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#222}
header{position:sticky;top:0;background:#fafafa;border-bottom:1px solid #ddd;padding:.6em 1em;z-index:2}
header label{margin-right:1.2em;font-size:.9em}select{font-size:.9em;max-width:32em}
#legend{display:inline-flex;align-items:center;font-size:.8em;gap:.4em;margin-left:.5em}
#bar{width:160px;height:10px;border:1px solid #ccc;background:linear-gradient(to right,__GRAD__)}
#meta{font-size:.85em;color:#444;margin:.3em 0 0}
#doc{white-space:pre-wrap;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px;line-height:1.55;
padding:1em;max-width:1100px}
.t{border-radius:2px}.dim{opacity:.25}.hl{outline:1px solid #333}
#tip{position:fixed;display:none;background:#fff;border:1px solid #999;padding:.4em .6em;font-size:12px;
font-family:system-ui,sans-serif;box-shadow:0 2px 6px rgba(0,0,0,.2);pointer-events:none;z-index:3;max-width:26em}
#tip b{font-family:ui-monospace,monospace}
</style></head><body>
<header>
 <label>document <select id="pick"></select></label>
 <label>highlight <select id="cat"><option value="">(all tokens)</option></select></label>
 <span id="legend"><span>__A__ better</span><span id="bar"></span><span>__B__ better</span>
   <span id="scale"></span></span>
 <p id="meta"></p>
</header>
<div id="doc"></div><div id="tip"></div>
<script type="application/json" id="data">__DATA__</script>
<script>
const D = JSON.parse(document.getElementById('data').textContent);
function COLOR(gap, scale) {  // = tokengap/analysis/viewer.py token_color
  let t = scale > 0 ? Math.max(-1, Math.min(1, gap / scale)) : 0, r, g, b;
  if (t >= 0) { r = 255 - 180 * t; g = 255 - 110 * t; b = 255; } else { r = 255; g = 255 + 180 * t; b = 255 + 180 * t; }
  return `rgb(${Math.round(r)},${Math.round(g)},${Math.round(b)})`;
}
const pick = document.getElementById('pick'), cat = document.getElementById('cat');
const docEl = document.getElementById('doc'), tip = document.getElementById('tip');
document.getElementById('scale').textContent = `(±${D.scale} nats and beyond)`;
D.docs.forEach((d, i) => { const o = document.createElement('option'); o.value = i;
  o.textContent = `${d.domain} · ${d.id} · ${d.n} tokens · mean gap ${d.mean_gap >= 0 ? '+' : ''}${d.mean_gap}`;
  pick.appendChild(o); });
D.categories.forEach(([k, t]) => { const o = document.createElement('option'); o.value = k; o.textContent = t;
  cat.appendChild(o); });
function label(d, i, c) { const v = d.lab[c][i]; return D.vocab[c] ? D.vocab[c][v] : v; }
function show(i) {
  const d = D.docs[i]; docEl.textContent = '';
  const frag = document.createDocumentFragment();
  d.pieces.forEach((p, j) => { const s = document.createElement('span'); s.className = 't'; s.textContent = p;
    const g = d.la[j] - d.lb[j]; s.dataset.i = j; s.dataset.gap = g.toFixed(3);
    s.style.backgroundColor = COLOR(g, D.scale); frag.appendChild(s); });
  docEl.appendChild(frag);
  document.getElementById('meta').textContent =
    `${d.id} (${d.domain}, ${d.source}): ${d.n} tokens, mean gap ${d.mean_gap >= 0 ? '+' : ''}${d.mean_gap} nats ` +
    `= loss(${D.a}) − loss(${D.b}); all ${D.n_docs_total} documents: ${D.mean_gap_all >= 0 ? '+' : ''}${D.mean_gap_all}. ` +
    `${D.docs.length} documents embedded.`;
  highlight();
}
function highlight() {
  const d = D.docs[pick.value], k = cat.value, on = new Set(k ? (d.cats[k] || []) : []);
  docEl.querySelectorAll('span.t').forEach(s => { const j = +s.dataset.i;
    s.classList.toggle('dim', !!k && !on.has(j)); s.classList.toggle('hl', !!k && on.has(j)); });
}
docEl.addEventListener('mousemove', e => { const s = e.target.closest('span.t'); if (!s) { tip.style.display = 'none'; return; }
  const d = D.docs[pick.value], j = +s.dataset.i, rows = [];
  rows.push(`<b>${JSON.stringify(d.pieces[j]).replace(/</g, '&lt;')}</b>`);
  rows.push(`loss ${D.a} ${d.la[j].toFixed(3)} · ${D.b} ${d.lb[j].toFixed(3)} · gap ${(d.la[j] - d.lb[j]).toFixed(3)}`);
  if (d.rep[j]) rows.push(`repeated ${d.rep[j]}-gram` + (D.hover.includes('copy_dist') ? `, copy distance ${label(d, j, 'copy_dist')}` : ''));
  D.hover.filter(c => c !== 'copy_dist').forEach(c => { const v = label(d, j, c);
    if (v !== '' && v !== 0 && v !== '0') rows.push(`${c}: ${v}`); });
  rows.push(`domain: ${d.domain}`);
  tip.innerHTML = rows.join('<br>'); tip.style.display = 'block';
  tip.style.left = Math.min(e.clientX + 12, innerWidth - 320) + 'px'; tip.style.top = (e.clientY + 14) + 'px'; });
docEl.addEventListener('mouseleave', () => tip.style.display = 'none');
function saveHash() { location.hash = `doc=${pick.value}` + (cat.value ? `&cat=${encodeURIComponent(cat.value)}` : ''); }
pick.addEventListener('change', () => { show(pick.value); saveHash(); });
cat.addEventListener('change', () => { highlight(); saveHash(); });
// a link can name the document and the category: viewer.html#doc=3&cat=rep_4
const H = new URLSearchParams(location.hash.slice(1));
if (H.has('doc') && D.docs[+H.get('doc')]) pick.value = H.get('doc');
if (H.has('cat')) cat.value = H.get('cat');
show(pick.value || 0);
</script></body></html>
"""


def write_viewer(path, data: dict) -> Path:
    """The page, self-contained (the data as JSON inside it), written atomically."""
    grad = ", ".join(token_color(g * data["scale"], data["scale"]) for g in (-1, -0.5, 0, 0.5, 1))
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    page = (PAGE.replace("__DATA__", payload).replace("__GRAD__", grad)
            .replace("__TITLE__", html.escape(f"tokengap viewer: {data['a']} vs {data['b']}"))
            .replace("__A__", html.escape(data["a"])).replace("__B__", html.escape(data["b"])))
    return atomic_write_text(Path(path), page)
