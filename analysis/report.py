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


STYLE = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222}h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2.2em;border-bottom:1px solid #ddd}
img{max-width:100%;border:1px solid #eee}.caption{color:#444;font-size:.92em}.links a{margin-right:1em}
details{margin:.6em 0}table{border-collapse:collapse;font-size:.8em}td,th{border:1px solid #ddd;padding:2px 6px;
text-align:right}th{background:#f4f4f4}.more{font-size:.8em;color:#666}.warn{background:#fff3cd;padding:.6em 1em;
border:1px solid #e0c870}code{background:#f4f4f4;padding:0 3px}"""


def write_report(entries: Sequence[dict], path, info: dict | None = None,
                 title: str = "tokengap: which tokens does the hybrid predict better?") -> Path:
    """Write the HTML report for figure entries {"name", "title", "png", "pdf", "csv", "caption"}."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent
    info = info or {}
    parts = [f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
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
    parts.append("<p>Gap = loss(transformer) − loss(model): positive means the model predicts the token better "
                 "than the transformer. Intervals: 95% document-level cluster bootstrap.</p>")
    if not entries:
        parts.append("<p>No figures: no score files or curves were found.</p>")
    else:
        parts.append("<ol>" + "".join(f"<li><a href='#{html.escape(e['name'])}'>{html.escape(e['title'])}</a></li>"
                                      for e in entries) + "</ol>")
    for e in entries:
        parts.append(f"<h2 id='{html.escape(e['name'])}'>{html.escape(e['title'])}</h2>")
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
