#!/usr/bin/env bash
# Set up syncguide in ./.venv and write a first panorama to outputs/first-panorama.png.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
mkdir -p outputs
[ -f models/tiny-sd/model_index.json ] || .venv/bin/python scripts/make_tiny_model.py models/tiny-sd
.venv/bin/syncguide panorama "a photo of mountains at sunset" --model models/tiny-sd --perceptual lpips-random \
  --steps 20 --stride 4 --sync-steps 10 --out outputs/first-panorama.png --overwrite
