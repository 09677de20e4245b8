#!/usr/bin/env bash
# Build the one-folder bundle in dist/nsfw-desk and smoke-test it.
#   bash packaging/build.sh            # uses the torch installed in .venv
# For a CPU-only bundle, install a CPU torch first (on Linux/Windows):
#   .venv/bin/pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -m pip install --quiet "pyinstaller>=6.10"
start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller \
  packaging/nsfw-desk.spec
end=$(date +%s)
echo "build: $((end - start)) s, size: $(du -sh dist/nsfw-desk | cut -f1)"
"$PY" packaging/smoke_test.py dist/nsfw-desk/nsfw-desk
