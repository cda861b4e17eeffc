#!/usr/bin/env bash
# Installs what magnet's tests need on Debian / Ubuntu (when missing) and runs them.
# Usage: bash scripts/test.sh            (the CPU backend; more with MAGNET_TEST_BACKENDS=cpu,wgpu)
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests need; installed only when absent, so a ready machine needs no root.
packages=(libhdf5-dev pkg-config dataset-fashion-mnist)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y --no-install-recommends "${missing[@]}"
fi

# The optional backends must keep compiling on a machine without CUDA or a GPU.
cargo check --all-targets --features cuda,wgpu
cargo test --release
