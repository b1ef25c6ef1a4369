#!/usr/bin/env bash
# Run HERE (a machine with pip access) before a lent-GPU call: the Python packages that bench/gpu_all.sh needs
# and the GPU image lacks (it has torch, triton, lightning, timm, torchmetrics, scikit-learn), as wheels for its
# Python 3.12 in .whl/ (git-ignored through .git/info/exclude). Carry `.whl` with the device call; gpu_all.sh
# installs them into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF '/.whl/' "$(git rev-parse --git-common-dir)/info/exclude" 2>/dev/null || echo '/.whl/' >> "$(git rev-parse --git-common-dir)/info/exclude"
PY=${PY:-python3}
PLAT="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLAT -d .whl \
    hydra-core==1.3.8 omegaconf==2.3.1 webdataset==1.0.2 braceexpand==0.1.7 diffusers==0.42.1 \
    importlib_metadata==10.2.0
# antlr4-python3-runtime (hydra's parser) exists only as an sdist: build its pure-Python wheel here
$PY -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
ls -la .whl
