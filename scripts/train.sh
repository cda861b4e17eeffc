#!/usr/bin/env bash
# Installs what magnet needs (when missing), builds it and runs `magnet train` with the given
# options; with none, it trains a U-Net on the built-in synthetic shapes.
# Usage: bash scripts/train.sh [magnet train options]     (see: bash scripts/train.sh --help)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
install_packages libhdf5-dev pkg-config
cargo run --release --quiet --bin magnet -- train "$@"
