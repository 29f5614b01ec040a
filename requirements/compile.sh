#!/usr/bin/env bash
# Regenerates the locks from pyproject.toml (see README "Upgrading the lock"): run it, rerun the
# reference results, and update every number the README quotes in the same commit.
set -euo pipefail
cd "$(dirname "$0")/.."
pip install --quiet "uv==0.13.9"
common=(--universal --python-version 3.11 --constraint requirements/one-version.txt pyproject.toml)
uv pip compile "${common[@]}" --extra test -o requirements/cpu.txt
uv pip compile "${common[@]}" --extra test --extra cuda12 -o requirements/cuda12.txt
uv pip compile "${common[@]}" --extra test --extra tpu -o requirements/tpu.txt
