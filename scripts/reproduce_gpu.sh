#!/usr/bin/env bash
# Small-scale reproduction on one GPU (RESULTS.md). Run from the repository root on the GPU machine, after
# `bash scripts/gpu_carry.sh` here has filled .whl/ and .carry/ (name both in the device tool's `carry`):
#
#   bash scripts/reproduce_gpu.sh SEED ARCH [ARCH ...]     e.g.  bash scripts/reproduce_gpu.sh 0 hybrid
#
# For each ARCH (a zoo model: transformer | hybrid | recurrent | transformer_swa | hybrid_gdn | recurrent_gdn | a
# sweep config): train at preset=small (150M tokens, WSD, filtered evaluation with annealed branches), score the
# final model on the whole eval set, the synthetic probes and the planted-repeat probe, and pack
# results/{scores,probes,curves,runs}/ARCH-sSEED* into $OUT/ARCH-sSEED.tar.gz (or results/ when OUT is unset), with
# results/runs/ARCH-sSEED/gpu.json (GPU, code, date, wall time). `python -m scripts.campaign next` runs the
# campaign's next missing runs through this script; `python -m scripts.campaign ingest` takes the archives in.
# The archive and the whole tree exceed one call's 64 MiB: slim the tree first (`bash scripts/gpu_tree.sh slim`).
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
if [ ! -f build/corpus/small/train.bin ]; then
  (cd .carry && sha256sum -c --quiet corpus-small.tar.xz.sha256) || {
    echo "reproduce_gpu.sh: .carry/corpus-small.tar.xz is missing or does not match its sha256 (make gpu-carry; carry .carry)" >&2
    exit 2; }
  $PY -m tokengap.train.data unpack .carry/corpus-small.tar.xz --workers "$(nproc)"
fi
[ -f build/probes/manifest.json ] || $PY -m tokengap.analysis probes generate --out build/probes --preset small
[ -f build/planted/planted.npz ] || $PY -m tokengap.analysis probes planted-generate --corpus build/corpus/small --out build/planted
FILTERS=${FILTERS:-results/filters.npz}  # from `python -m tokengap.analysis label` (make gpu-carry), committed

for ARCH in "${ARCHS[@]}"; do
  RUN=$ARCH-s$SEED
  T0=$SECONDS
  # 3. train (same data order and schedule for every architecture: both depend on the seed only)
  $PY -m tokengap.train model="$ARCH" preset=small train.seed="$SEED" run_dir="runs/$RUN" \
      train.eval.filters="$FILTERS" train.progress=false ${TRAIN_ARGS:-}
  # 4. score the final model on every eval token, on the probes and on the planted-repeat retrieval probe
  #    (docs/probes.md), into the run directory: the analysis commands never write into results/
  $PY -m tokengap.analysis score --model "runs/$RUN/model" --eval build/corpus/small --context 2048 --batch-size 32 \
      --out "runs/$RUN/final-scores.npz"
  $PY -m tokengap.analysis probes score --model "runs/$RUN/model" --tokenizer build/corpus/small/tokenizer.json \
      --probes build/probes --context 2048 --batch-size 32 --out "runs/$RUN/probes.npz"
  $PY -m tokengap.analysis probes planted-score --model "runs/$RUN/model" --planted build/planted/planted.npz \
      --out "runs/$RUN/planted.npz"
  # 5. into results/: the scores, logs, resolved configs and the per-token losses of every annealed point
  mkdir -p results/scores results/probes/planted results/curves "results/runs/$RUN" results/scores/annealed
  cp "runs/$RUN/final-scores.npz" "results/scores/$RUN.npz"
  cp "runs/$RUN/probes.npz" "results/probes/$RUN.npz"
  cp "runs/$RUN/planted.npz" "results/probes/planted/$RUN.npz"
  cp "runs/$RUN/metrics.jsonl" "results/curves/$RUN.jsonl"
  # per-token losses at the annealed points: kept for the study trio only (claim 6 and the matched-loss view read
  # them where every seed of an architecture has them; the Mamba2 trio's seeds 0 and 1 have none, the sweep does
  # not use them), and never the final step's, which is the final score file again: results/ stays under 150 MB
  FINAL=$($PY -c "import json, sys; print(json.load(open(sys.argv[1]))['steps'])" "runs/$RUN/summary.json")
  case " ${ANNEALED_ARCHS:-transformer_swa hybrid_gdn recurrent_gdn} " in *" $ARCH "*)
    for f in runs/$RUN/scores/annealed-step*.npz; do
      STEP=$(basename "$f" .npz | sed 's/annealed-step0*//')
      [ -f "$f" ] && [ "$STEP" != "$FINAL" ] && cp "$f" "results/scores/annealed/$RUN-$(basename "$f" .npz | sed 's/annealed-//').npz"
    done;;
  esac
  cp "runs/$RUN/run.json" "runs/$RUN/summary.json" "runs/$RUN/config.yaml" "results/runs/$RUN/"
  # 6. what ran where: the GPU, the code, the date and the wall time of this run (over every call that resumed it)
  WALL=$(( SECONDS - T0 + $(cat "runs/$RUN/wall_s" 2>/dev/null || echo 0) ))
  echo "$WALL" > "runs/$RUN/wall_s"
  $PY -c "import json, sys, datetime, torch; from tokengap.evaluation.scorefile import code_version
json.dump({'gpu': torch.cuda.get_device_name(), 'code_version': code_version(), 'wall_s': int(sys.argv[1]),
           'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')},
          open(sys.argv[2], 'w'), indent=1)" "$WALL" "results/runs/$RUN/gpu.json"
  [ -z "${OUT:-}" ] || $PY -m scripts.campaign pack "$RUN"
done
