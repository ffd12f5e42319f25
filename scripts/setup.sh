#!/usr/bin/env bash
# Set up syncguide in ./.venv and write a first panorama to outputs/first-panorama.png.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
mkdir -p outputs
# the bundled demo model (tiny, trained on procedural landscapes) is the default: no download
.venv/bin/syncguide panorama "a photo of mountains at sunset" --out outputs/first-panorama.png --overwrite
