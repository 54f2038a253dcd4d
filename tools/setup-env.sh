#!/usr/bin/env bash
# Create (or update) a virtual environment with sweetspot and its dependencies.
#   bash tools/setup-env.sh [VENV_DIR] [test]
# torch and torchvision are pinned to a pair whose wheels match (timm needs torchvision).
set -euo pipefail
venv=${1:-.venv}
extra=${2:-}
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
if [ "$extra" = test ]; then
  "$venv/bin/python" -m pip install -q -e ".[test,pretrained]"
else
  "$venv/bin/python" -m pip install -q -e ".[pretrained]"
fi
