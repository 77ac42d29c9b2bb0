"""tokengap analysis command line.

    python -m analysis score    ...   per-token losses of one model on the eval set  (analysis/score.py)
    python -m analysis label    ...   category labels + filter masks for the eval set (analysis/labels.py)
    python -m analysis compare  ...   gap tables, bootstrap CIs, regression          (analysis/compare.py)
    python -m analysis figures  ...   every figure + the HTML report from results/   (analysis/figures/)
    python -m analysis probes   ...   synthetic probes: generate and score           (analysis/probes/)
    python -m analysis claims   ...   the study's headline claims, measured          (analysis/claims.py)
    python -m analysis pipeline ...   two models -> labels, scores, report, viewer   (analysis/pipeline.py)
    python -m analysis words    ...   two tokenizers: the gap word by word, bits/byte (analysis/words.py)
    python -m analysis sweep    ...   attention-ratio sweep and the copy-distance cliff (analysis/sweep.py)

Each subcommand lives in its own module, which provides add_arguments(parser) and run(args).
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "score": "analysis.score",
    "label": "analysis.labels",
    "compare": "analysis.compare",
    "figures": "analysis.figures",
    "probes": "analysis.probes.cli",
    "claims": "analysis.claims",
    "pipeline": "analysis.pipeline",
    "words": "analysis.words",
    "sweep": "analysis.sweep",
}


def main(argv: list[str]) -> int:
    from analysis.errors import AnalysisError, OneLineParser
    parser = OneLineParser(prog="python -m analysis", description=__doc__,
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
    from analysis.inloop import InLoopError
    from evaluation.sources import SourceError
    try:
        return importlib.import_module(args.module).run(args)
    except (AnalysisError, SourceError, InLoopError, FileNotFoundError) as exc:  # one line, naming the input
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"error: python -m analysis {args.command}: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
