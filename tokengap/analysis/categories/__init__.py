"""Token categories: one registry of labelers, each a small pure function of one document.

    from tokengap.analysis.categories import REGISTRY, DocView, label_document
    doc = DocView.from_pieces(["def", " f", "(", "x", "):"], domain="python")
    label_document(doc, ["delimiters", "python"])   # {"delim_type": ..., "py_lex": ...}

Modules (one concept each): registry (DocView, @labeler, helpers), pos (PTB tags on prose), repetition
(repeated n-grams, copy distance), delimiters, code (Python lexical classes), markup (HTML, LaTeX), context
(domain, source, position, unigram frequency); families (named token sets built from the labels, for tables
and figures) and filters (the boolean masks the training loop evaluates).
"""
from tokengap.analysis.categories.registry import REGISTRY, DocView, Labeler, label_by_spans, label_document, labeler
from tokengap.analysis.categories import pos, repetition, delimiters, code, markup, context  # noqa: F401  (registers)

__all__ = ["REGISTRY", "DocView", "Labeler", "label_by_spans", "label_document", "labeler"]
