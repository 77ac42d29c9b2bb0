#!/usr/bin/env bash
# Prepare, on the CPU machine, everything the offline GPU machine lacks (RESULTS.md, "Rerunning"):
#   .whl/    pure-Python wheels: hydra-core, omegaconf, antlr4 runtime, mamba-ssm (built without CUDA),
#            fla (flash-linear-attention: its Triton causal conv)
#   .carry/  the small corpus as one archive (docs + tokenizer + manifest) and its sha256
# The folders are git-ignored; name both in the device tool's `carry`, with the working tree slimmed first
# (`bash scripts/gpu_tree.sh slim`: the 53 MB archive and the whole tree do not fit one call's 64 MiB together).
# Usage: bash scripts/gpu_carry.sh [mix]
set -euo pipefail
cd "$(dirname "$0")/.."
MIX=${1:-small}
PY=.venv/bin/python
mkdir -p .whl .carry
need() { ls .whl/$1-*.whl >/dev/null 2>&1; }
need hydra_core || $PY -m pip download -q --no-deps hydra-core==1.3.8 -d .whl
need omegaconf || $PY -m pip download -q --no-deps omegaconf==2.3.1 -d .whl
need fla_core || $PY -m pip download -q --no-deps fla-core==0.6.0 -d .whl
need flash_linear_attention || $PY -m pip download -q --no-deps flash-linear-attention==0.6.0 -d .whl
need antlr4_python3_runtime || $PY -m pip wheel -q --no-deps antlr4-python3-runtime==4.9.3 -w .whl
# mamba-ssm ships an sdist whose setup downloads a CUDA wheel; build the pure-Python (Triton) part instead.
need mamba_ssm || (cd "$(mktemp -d)" && MAMBA_SKIP_CUDA_BUILD=TRUE MAMBA_FORCE_BUILD=TRUE \
    "$OLDPWD/$PY" -m pip wheel -q --no-build-isolation --no-deps mamba-ssm==2.3.2.post1 -w "$OLDPWD/.whl")
$PY -m tokengap.train.data build --mix "$MIX"
mkdir -p build/carry
$PY -m tokengap.train.data pack --mix "$MIX" --out "build/carry/corpus-$MIX.tar.xz"
rm -f .carry/corpus-"$MIX".tar.xz*
mv "build/carry/corpus-$MIX.tar.xz" .carry/
(cd .carry && sha256sum "corpus-$MIX.tar.xz") > ".carry/corpus-$MIX.tar.xz.sha256"
# labels and filter masks of the eval set: committed under results/ (the figures are drawn from them) and read by
# the training loop's filtered evaluation on the GPU machine; `label` writes into build/ only, copied here
$PY -m tokengap.analysis label --eval "build/corpus/$MIX" --context 2048 --out "build/labels/$MIX-T2048.parquet" \
    --filters "build/labels/$MIX-T2048.filters.npz" --train-corpus "build/corpus/$MIX"
cp "build/labels/$MIX-T2048.parquet" results/labels.parquet
cp "build/labels/$MIX-T2048.filters.npz" results/filters.npz
# the eval set's document lengths, for scripts/hf_throughput.py (random ids at these lengths: no corpus needed there)
$PY -c "import numpy as np, pandas as pd; d = pd.read_parquet('results/labels.parquet', columns=['doc_index']);
np.save('.carry/eval_doc_lengths.npy', np.bincount(d['doc_index'].to_numpy()).astype(np.int64))"
# the probe set (27 MB) is generated on the GPU machine instead: deterministic, byte-identical there (6 s)
du -sh .whl .carry
bash scripts/gpu_tree.sh size
