"""tokengap analysis command line.

    python -m tokengap.analysis score    ...   per-token losses of one model on the eval set     (score.py)
    python -m tokengap.analysis label    ...   category labels + filter masks for the eval set   (labels.py)
    python -m tokengap.analysis compare  ...   gap tables, bootstrap CIs, regression             (compare.py)
    python -m tokengap.analysis figures  ...   every figure + the HTML report from results/      (figures/)
    python -m tokengap.analysis probes   ...   synthetic probes: generate and score              (probes/)
    python -m tokengap.analysis claims   ...   the study's headline claims, measured             (claims.py)
    python -m tokengap.analysis pipeline ...   two models -> labels, scores, report, viewer      (pipeline.py)
    python -m tokengap.analysis words    ...   two tokenizers: the gap word by word, bits/byte   (words.py)
    python -m tokengap.analysis sweep    ...   attention-ratio sweep and the copy-distance cliff (sweep.py)

Each subcommand lives in its own module of tokengap/analysis/ (on the right), which provides add_arguments(parser)
and run(args).
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "score": "tokengap.analysis.score",
    "label": "tokengap.analysis.labels",
    "compare": "tokengap.analysis.compare",
    "figures": "tokengap.analysis.figures",
    "probes": "tokengap.analysis.probes.cli",
    "claims": "tokengap.analysis.claims",
    "pipeline": "tokengap.analysis.pipeline",
    "words": "tokengap.analysis.words",
    "sweep": "tokengap.analysis.sweep",
}


def main(argv: list[str]) -> int:
    from tokengap.analysis.errors import AnalysisError, OneLineParser
    parser = OneLineParser(prog="python -m tokengap.analysis", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        p = sub.add_parser(name, help=f"see {module}")
        p.set_defaults(module=module)
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    args = parser.parse_args(argv)
    from tokengap.analysis.inloop import InLoopError
    from tokengap.evaluation.sources import SourceError
    try:
        return importlib.import_module(args.module).run(args)
    except (AnalysisError, SourceError, InLoopError, FileNotFoundError) as exc:  # one line, naming the input
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"error: python -m tokengap.analysis {args.command}: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
