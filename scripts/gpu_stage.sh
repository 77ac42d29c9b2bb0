#!/usr/bin/env bash
# The staging call of a reproduction on the GPU machine (the corpus archive does not fit one call beside the tree):
# run with carry [".carry-stage"], then, within the machine's idle time, the reproduce_gpu.sh call with carry
# [".whl", ".carry"]. build/ is ignored and not carried, so what this copies there stays between the two calls.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build/stage
cp .carry-stage/* build/stage/
ls -l build/stage
