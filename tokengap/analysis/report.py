"""One HTML page that shows every figure (ours and the probes'), with its caption and its numbers.

Images are referenced relatively (the page sits beside the figure folder), so the report, the PNGs and the
CSVs travel together. The page has no date or absolute path in it: regenerating from the same results gives
the same bytes.
"""
from __future__ import annotations

import csv
import html
import os
from pathlib import Path
from typing import Sequence


def _rel(path: str, base: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), base.resolve())).as_posix()


def _csv_preview(path: str, max_rows: int = 40, max_cols: int = 14) -> str:
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError:
        return ""
    if not rows:
        return ""
    head, body = rows[0][:max_cols], [r[:max_cols] for r in rows[1:max_rows + 1]]

    def cell(v: str) -> str:
        try:
            x = float(v)
            return f"{x:.4g}" if not x.is_integer() or abs(x) >= 1e6 else str(int(x))
        except ValueError:
            return v
    out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in r) + "</tr>" for r in body]
    out.append("</tbody></table>")
    more = len(rows) - 1 - len(body)
    if more > 0:
        out.append(f"<p class='more'>… {more} more rows in the CSV</p>")
    return "\n".join(out)


def markdown_html(md: str) -> str:
    """The paragraphs and pipe tables of a small markdown text (results/claims.md, a pipeline's summary.md) as
    HTML; cells are escaped, inline code kept as <code>."""
    import re

    def inline(t: str) -> str:
        t = html.escape(t)
        t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
        return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)

    out, table = [], []

    def flush():
        if table:
            head, body = table[0], [r for r in table[1:] if not set("".join(r)) <= set("-: ")]
            out.append("<table class='headline'><thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head)
                       + "</tr></thead><tbody>" + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r)
                                                          + "</tr>" for r in body) + "</tbody></table>")
            table.clear()
    for line in md.splitlines():
        if line.strip().startswith("|"):
            table.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        flush()
        if line.strip():
            out.append(f"<p>{inline(line.strip())}</p>")
    flush()
    return "\n".join(out)


STYLE = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222}h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2.2em;border-bottom:1px solid #ddd}
img{max-width:100%;border:1px solid #eee}.caption{color:#444;font-size:.92em}.links a{margin-right:1em}
details{margin:.6em 0}table{border-collapse:collapse;font-size:.8em}td,th{border:1px solid #ddd;padding:2px 6px;
text-align:right}th{background:#f4f4f4}.more{font-size:.8em;color:#666}.warn{background:#fff3cd;padding:.6em 1em;
border:1px solid #e0c870}code{background:#f4f4f4;padding:0 3px}table.headline{font-size:.82em;margin:.6em 0}
table.headline td{text-align:left}.headline-box{border:1px solid #ccd;background:#f8f9fd;padding:.2em 1em 1em}"""


def write_report(entries: Sequence[dict], path, info: dict | None = None,
                 title: str = "tokengap: which tokens does the hybrid predict better?", headline: str = "",
                 headline_title: str = "Headline", links: Sequence[tuple[str, str]] = ()) -> Path:
    """Write the HTML report for figure entries {"name", "title", "png", "pdf", "csv", "caption"}; `headline`
    (HTML: the claims table, or a pair's summary table) comes first, `links` [(text, relative href)] below it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent
    info = info or {}
    parts = [f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    if headline:
        parts.append(f"<div class='headline-box'><h2>{html.escape(headline_title)}</h2>{headline}</div>")
    if links:
        parts.append("<p class='links'>" + "".join(f"<a href='{html.escape(h)}'>{html.escape(t)}</a>"
                                                  for t, h in links) + "</p>")
    if info.get("synthetic"):
        parts.append("<p class='warn'><b>Synthetic data.</b> These score files were generated with planted "
                     "effects (tests/synthetic.py); they are not results.</p>")
    facts = []
    if info.get("eval_hash"):
        facts.append(f"eval set <code>{html.escape(str(info['eval_hash'])[:16])}…</code>, "
                     f"{info.get('n_tokens', 0):,} tokens")
    for k, v in info.items():
        if isinstance(v, dict) and "seeds" in v:
            facts.append(f"{html.escape(k)}: {v['seeds']} seed(s) ({html.escape(', '.join(v['files']))}; "
                         f"step {html.escape(', '.join(v['steps']))})")
    if facts:
        parts.append("<ul>" + "".join(f"<li>{f}</li>" for f in facts) + "</ul>")
    baseline = html.escape(info.get("baseline", "transformer"))
    parts.append(f"<p>Gap = loss({baseline}) − loss(model): positive means the model predicts the token better "
                 f"than {baseline}. Intervals: 95% document-level cluster bootstrap.</p>")
    if not entries:
        parts.append("<p>No figures: no score files or curves were found.</p>")
    else:
        parts.append("<ol>" + "".join(f"<li><a href='#{html.escape(e['name'])}'>{html.escape(e['title'])}</a></li>"
                                      for e in entries) + "</ol>")
    for i, e in enumerate(entries, 1):  # numbered here, once: the list above and these headings agree
        parts.append(f"<h2 id='{html.escape(e['name'])}'>{i}. {html.escape(e['title'])}</h2>")
        if e.get("png"):
            parts.append(f"<img src='{html.escape(_rel(e['png'], base))}' alt='{html.escape(e['title'])}'>")
        parts.append(f"<p class='caption'>{html.escape(e.get('caption', ''))}</p>")
        links = [f"<a href='{html.escape(_rel(e[k], base))}'>{k.upper()}</a>" for k in ("pdf", "csv") if e.get(k)]
        parts.append(f"<p class='links'>{''.join(links)}</p>")
        if e.get("csv"):
            parts.append(f"<details><summary>numbers</summary>{_csv_preview(e['csv'])}</details>")
    parts.append("</body></html>\n")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
