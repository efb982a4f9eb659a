#!/usr/bin/env bash
# Create bench/.venv-dpmm, a separate environment for dpmm's AIM, MST and PrivBayes (Private-PGM
# inside), the synth bench's strongest peers. Never a project dependency: dpmm 0.1.9 pins
# opendp 0.12, numpy 1.26 and pandas 2.1, which cannot share the hub's environment (opendp 0.16)
# nor bench/.venv-synth (smartnoise-synth pins opendp<0.15 and mbi<2).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv-dpmm
.venv-dpmm/bin/pip install --quiet --upgrade pip
.venv-dpmm/bin/pip install --quiet "dpmm==0.1.9"
echo "dpmm environment ready: $(pwd)/.venv-dpmm"
