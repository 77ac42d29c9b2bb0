#!/usr/bin/env bash
# Small-scale reproduction on one GPU (RESULTS.md). Run from the repository root on the GPU machine, after
# `bash scripts/gpu_carry.sh` here has filled .whl/ and .carry/ (name both in the device tool's `carry`):
#
#   bash scripts/reproduce_gpu.sh SEED ARCH [ARCH ...]     e.g.  bash scripts/reproduce_gpu.sh 0 hybrid
#
# For each ARCH (transformer | hybrid | recurrent): train at preset=small (150M tokens, WSD, filtered evaluation
# with annealed branches), score the final model on the whole eval set and on the synthetic probes, and pack
# results/{scores,probes,curves,runs}/ARCH-sSEED* into $OUT/ARCH-sSEED.tar.gz (or results/ when OUT is unset).
# Everything is resumable: rerunning after an interruption continues from the last checkpoint.
# TRAIN_ARGS="key=value ..." adds training overrides (e.g. a short smoke run: TRAIN_ARGS=train.max_tokens=5000000).
# The GPU machine's copy of the tree has no .git: set TOKENGAP_CODE_VERSION=<commit> so runs record their code.
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${1:?usage: reproduce_gpu.sh SEED ARCH...}
shift
ARCHS=("$@")
[ ${#ARCHS[@]} -gt 0 ] || ARCHS=(transformer hybrid recurrent)
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
PY=${PY:-python3}

# 1. what the offline machine lacks: pure-Python wheels (hydra, omegaconf, antlr, mamba-ssm, fla)
if [ -d .whl ] && [ ! -d /tmp/site/hydra ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=$PWD:/tmp/site:${PYTHONPATH:-}

# 2. corpus (unpacked and re-tokenized; train.bin is verified against the manifest), probes
[ -f build/corpus/small/train.bin ] || $PY -m train.data unpack .carry/corpus-small.tar.xz --workers "$(nproc)"
[ -f build/probes/manifest.json ] || $PY -m analysis probes generate --out build/probes --preset small
FILTERS=${FILTERS:-results/filters.npz}  # from `python -m analysis label` (make gpu-carry), committed

for ARCH in "${ARCHS[@]}"; do
  RUN=$ARCH-s$SEED
  # 3. train (same data order and schedule for every architecture: both depend on the seed only)
  $PY -m train model="$ARCH" preset=small train.seed="$SEED" run_dir="runs/$RUN" \
      train.eval.filters="$FILTERS" train.progress=false ${TRAIN_ARGS:-}
  # 4. score the final model on every eval token and on the probes
  $PY -m analysis score --model "runs/$RUN/model" --eval build/corpus/small --context 2048 --batch-size 32 \
      --out "results/scores/$RUN.npz"
  $PY -m analysis probes score --model "runs/$RUN/model" --tokenizer build/corpus/small/tokenizer.json \
      --probes build/probes --context 2048 --batch-size 32 --out "results/probes/$RUN.npz"
  # 5. logs, resolved configs and the per-token losses of every annealed point next to the scores
  mkdir -p results/curves "results/runs/$RUN" results/scores/annealed
  cp "runs/$RUN/metrics.jsonl" "results/curves/$RUN.jsonl"
  for f in runs/$RUN/scores/annealed-step*.npz; do
    [ -f "$f" ] && cp "$f" "results/scores/annealed/$RUN-$(basename "$f" .npz | sed 's/annealed-//').npz"
  done
  cp "runs/$RUN/run.json" "runs/$RUN/summary.json" "runs/$RUN/config.yaml" "results/runs/$RUN/"
  if [ -n "${OUT:-}" ]; then
    tar czf "$OUT/$RUN.tar.gz" "results/scores/$RUN.npz" "results/probes/$RUN.npz" "results/curves/$RUN.jsonl" \
        "results/runs/$RUN" results/scores/annealed/"$RUN"-step*.npz
  fi
done
