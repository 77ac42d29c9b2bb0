#!/usr/bin/env bash
# Prepare, on the CPU machine, everything the offline GPU machine lacks (see ../shared/briefs/gpu.md):
#   .whl/    pure-Python wheels: hydra-core, omegaconf, antlr4 runtime, mamba-ssm (built without CUDA),
#            fla (flash-linear-attention: its Triton causal conv)
#   .carry/, .carry-stage/  the small corpus as one archive (docs + tokenizer + manifest), in two halves
# The folders are git-ignored; name them in the device tool's `carry` (see scripts/gpu_stage.sh).
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
$PY -m train.data build --mix "$MIX"
# The archive (53 MB for small) and the working tree (~26 MB) together pass the device tool's 64 MiB a call: carry
# it in two halves. .carry-stage/ holds the first (a short staging call copies it to build/stage/ on the machine,
# `bash scripts/gpu_stage.sh`), .carry/ the second and the whole file's sha256; reproduce_gpu.sh joins and checks.
mkdir -p build/carry .carry-stage
$PY -m train.data pack --mix "$MIX" --out "build/carry/corpus-$MIX.tar.xz"
rm -f ".carry/corpus-$MIX.tar.xz" ".carry/corpus-$MIX.tar.xz.part"* ".carry-stage/corpus-$MIX.tar.xz.part"*
split -n 2 -d "build/carry/corpus-$MIX.tar.xz" "build/carry/corpus-$MIX.tar.xz.part"
mv "build/carry/corpus-$MIX.tar.xz.part00" .carry-stage/
mv "build/carry/corpus-$MIX.tar.xz.part01" .carry/
(cd build/carry && sha256sum "corpus-$MIX.tar.xz") > ".carry/corpus-$MIX.tar.xz.sha256"
# labels and filter masks of the eval set: committed under results/ (the figures are drawn from them) and read by
# the training loop's filtered evaluation on the GPU machine
$PY -m analysis label --eval "build/corpus/$MIX" --context 2048 --out results/labels.parquet \
    --filters results/filters.npz --train-corpus "build/corpus/$MIX"
# the eval set's document lengths, for scripts/hf_throughput.py (random ids at these lengths: no corpus needed there)
$PY -c "import numpy as np, pandas as pd; d = pd.read_parquet('results/labels.parquet', columns=['doc_index']);
np.save('.carry/eval_doc_lengths.npy', np.bincount(d['doc_index'].to_numpy()).astype(np.int64))"
# the probe set (27 MB) is generated on the GPU machine instead: deterministic, byte-identical there (6 s)
du -sh .whl .carry .carry-stage
