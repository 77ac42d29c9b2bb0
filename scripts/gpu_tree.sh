#!/usr/bin/env bash
# What travels to the GPU machine: the device tool copies the checkout (tracked files, untracked files git does not
# ignore, and the carried folders), 64 MiB at most a call. results/ grows by several MB a run (per-token score files
# at the final and annealed points, probes) and the small corpus archive is about 53 MB, so during GPU work the
# committed files the GPU machine never reads leave the working tree (a sparse checkout), and come back after:
#
#   bash scripts/gpu_tree.sh slim            before GPU calls: results/{scores,probes,figures}, labels.parquet and
#                                            report.html out of the working tree (still committed, still in .git)
#   bash scripts/gpu_tree.sh full            after: the whole tree back
#   bash scripts/gpu_tree.sh size [PATH...]  MiB that would travel now, with the carried PATHs (default .whl .carry)
#
# slim refuses while anything under those paths is uncommitted (commit what came back first: untracked files there
# would travel, and modified ones would be lost from the working tree).
set -euo pipefail
cd "$(dirname "$0")/.."
OUTSIDE=(results/scores/ results/probes/ results/figures/ results/labels.parquet results/report.html)

size() {
  local carry=("$@")
  [ ${#carry[@]} -gt 0 ] || carry=(.whl .carry)
  { git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done
    find "${carry[@]}" -type f -print0 2>/dev/null || true; } | du -cb --files0-from=- | tail -n 1 |
    awk '{printf "%.1f MiB would travel (limit 64 MiB)\n", $1 / 1048576}'
}

case "${1:-}" in
  slim)
    dirty=$(git status --porcelain --untracked-files=all -- "${OUTSIDE[@]}")
    if [ -n "$dirty" ]; then
      echo "gpu_tree.sh: uncommitted files under the paths slim takes out; commit them first:" >&2
      echo "$dirty" | head -5 >&2
      exit 2
    fi
    git sparse-checkout set --no-cone '/*' "${OUTSIDE[@]/#/!/}"
    size .whl .carry ;;
  full)
    git sparse-checkout disable
    size .whl .carry ;;
  size)
    shift; size "$@" ;;
  *)
    echo "usage: bash scripts/gpu_tree.sh slim | full | size [PATH...]" >&2; exit 2 ;;
esac
