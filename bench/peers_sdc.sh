#!/usr/bin/env bash
# Create bench/.venv-sdc, a separate environment for the Python peers the SDC bench compares
# against. They are never project dependencies (anjana pins its own pandas and pycanon):
#   pycanon  measures k-anonymity, l-diversity, t-closeness of a data set
#   anjana   anonymises with generalisation hierarchies and suppression (built on pycanon)
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv-sdc
# Keep git and ruff out of it (Python 3.13's venv writes this file itself).
echo '*' > .venv-sdc/.gitignore
.venv-sdc/bin/pip install --quiet --upgrade pip
# anjana pins the pycanon it is built on; take that one.
.venv-sdc/bin/pip install --quiet "anjana==1.2.3" pycanon
echo "peer environment ready: $(pwd)/.venv-sdc"
