#!/usr/bin/env bash
# Quick start: set up, build, and train the default config (configs/tiny.json)
# on the bundled data (data/tiny), on the GPU when there is one, else the CPU.
# Prints where the metrics log and the checkpoint went.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
out="runs/quickstart_$(date +%Y%m%d_%H%M%S)"
build/muongpt train --config configs/tiny.json --device auto --out "$out"
echo
echo "run directory: $out (config.json, metrics.jsonl, summary.json, checkpoints)"
echo "try next: build/muongpt sample --checkpoint $out/$(ls "$out" | grep '^ckpt_' | tail -1)"
