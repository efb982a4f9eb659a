#!/usr/bin/env bash
# Create bench/.venv-anon, a separate environment for Anonymeter (Giomi et al., 2023), the peer
# that bench/anon_check.py cross-checks the hub's privacy attacks against. It is never a project
# dependency: anonymeter 1.1.0 requires numpy<1.27, and the hub runs on numpy 2.
# Every package is pinned to the versions that install together on Python 3.11 here, so the
# cross-check is reproducible; pyarrow<22 is anonymeter's own cap.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv-anon
.venv-anon/bin/pip install --quiet --upgrade pip
.venv-anon/bin/pip install --quiet \
    "anonymeter==1.1.0" \
    "numpy==1.26.4" \
    "pandas==3.0.6" \
    "polars==2.1.0" \
    "pyarrow==21.0.0" \
    "scikit-learn==1.9.1" \
    "scipy==1.17.1" \
    "numba==0.68.1" \
    "llvmlite==0.50.0" \
    "joblib==1.6.0"
echo "anonymeter environment ready: $(pwd)/.venv-anon"
