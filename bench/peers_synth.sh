#!/usr/bin/env bash
# Create bench/.venv-synth, a separate environment for the peer synthesizers the synth bench
# compares against. They are never project dependencies: smartnoise-synth pins opendp<0.15
# and pulls torch, opacus and JAX, so it cannot share the hub's environment.
#   pac-synth         SDS (CTDC's own synthesizer), a small wheel
#   smartnoise-synth  MST and AIM (opt in with WITH_SMARTNOISE=1; about 2 GB with torch)
# torch is installed first, pinned to 2.13.0: pip takes that CPU build from this machine's
# disk, whereas letting smartnoise-synth pull "torch" unpinned downloads a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv-synth
.venv-synth/bin/pip install --quiet --upgrade pip
.venv-synth/bin/pip install --quiet "pac-synth==0.0.8" "pandas>=2,<4" "numpy<3"
if [[ "${WITH_SMARTNOISE:-0}" == "1" ]]; then
    .venv-synth/bin/pip install --quiet "torch==2.13.0"
    .venv-synth/bin/pip install --quiet "smartnoise-synth==1.0.8"
fi
echo "peer environment ready: $(pwd)/.venv-synth"
