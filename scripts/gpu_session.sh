#!/usr/bin/env bash
# One device-tool call on the GPU machine: install what it lacks, then run the named parts in order, each logged
# to $OUT/<part>.log (and .json where the part writes one), each stopped when the call's budget runs out so the
# logs of the parts before still come back. Run from the repository root with .whl/ and .carry/ carried:
#
#   BUDGET=570 TOKENGAP_CODE_VERSION=<commit> bash scripts/gpu_session.sh check pytest smoke
#
# Parts: check (scripts/gpu_check.py; check-gdn: its GDN stages only), pytest (the CUDA tests, one line each: a
# timeout still says which passed), smoke (a short preset=small run of hybrid_gdn and
# hybrid on the small-smoke corpus), smoke-swa (the same for transformer_swa), bench-small / bench-base
# (scripts/bench.py at one size), hf (scripts/hf_throughput.py).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true NCCL_NVLS_ENABLE=0
export PY=${PY:-python3}
export OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
START=$(date +%s)
BUDGET=${BUDGET:-570}
left() { echo $((BUDGET - ($(date +%s) - START))); }

if [ -d .whl ] && [ ! -d /tmp/site/hydra ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=$PWD:/tmp/site:${PYTHONPATH:-}

run() {  # run PART CMD...: CMD with what is left of the budget, output to $OUT/PART.log
  local part=$1; shift
  local t=$(left)
  if [ "$t" -lt 20 ]; then echo "== $part: skipped, ${t}s left" | tee -a "$OUT/session.log"; return; fi
  echo "== $part ($(date +%T), ${t}s left): $*" | tee -a "$OUT/session.log"
  if declare -F "$1" > /dev/null; then  # a function of this script: timeout runs programs, so hand it to bash
    timeout "$t" bash -c "$(declare -f corpus smoke); set -uo pipefail; $*" > "$OUT/$part.log" 2>&1
  else
    timeout "$t" "$@" > "$OUT/$part.log" 2>&1
  fi
  echo "== $part: exit $? after $(( $(date +%s) - START ))s" | tee -a "$OUT/session.log"
  tail -n 25 "$OUT/$part.log"
}

corpus() {  # the small-smoke corpus (7.9 MB carried): re-tokenized and checked against its manifest
  [ -f build/corpus/small-smoke/train.bin ] || $PY -m tokengap.train.data unpack .carry/corpus-small-smoke.tar.xz --workers "$(nproc)"
}

smoke() {  # smoke MODEL...: 200 steps x 65,536 tokens of preset=small on 14M tokens of the small corpus
  corpus
  for m in "$@"; do
    $PY -m tokengap.train model="$m" preset=small data.mix=small-smoke train.max_tokens=13107200 \
        train.eval.interval=50 train.eval.max_docs_per_domain=4 train.eval.anneal_at=[] \
        train.eval.filters=results/filters.npz \
        train.checkpoint.interval=0 train.progress=false train.tensorboard=false run_dir="runs/smoke-$m" || return 1
    cp "runs/smoke-$m/metrics.jsonl" "$OUT/smoke-$m.jsonl"
  done
}

for part in "$@"; do
  case $part in
    check) run check $PY -m scripts.gpu_check --json "$OUT/gpu_check.json" ;;
    check-gdn) run check-gdn $PY -m scripts.gpu_check --only gdn --json "$OUT/gpu_check_gdn.json" ;;
    pytest) run pytest $PY -m pytest -v -p no:cacheprovider -k cuda tests/test_gdn.py tests/test_hf_classes.py \
              tests/test_graphed.py tests/test_models.py tests/test_ce_triton.py tests/test_conv_triton.py \
              tests/test_norm_triton.py ;;
    smoke) run smoke smoke hybrid_gdn hybrid ;;
    smoke-swa) run smoke-swa smoke transformer_swa ;;
    bench-small) run bench-small $PY -m scripts.bench --sizes small --no-eager --no-scoring --repeats 1 \
                   --compiled-reference transformer --json "$OUT/bench_small.json" ;;
    bench-base) run bench-base $PY -m scripts.bench --sizes base --no-eager --no-scoring --repeats 1 \
                  --models transformer hybrid transformer_swa hybrid_gdn recurrent_gdn \
                  --compiled-reference transformer --json "$OUT/bench_base.json" ;;
    hf) run hf $PY -m scripts.hf_throughput --lengths .carry/eval_doc_lengths.npy --json "$OUT/hf_throughput.json" ;;
    *) echo "unknown part $part" ;;
  esac
done
echo "== done after $(( $(date +%s) - START ))s" | tee -a "$OUT/session.log"
