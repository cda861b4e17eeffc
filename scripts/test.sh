#!/usr/bin/env bash
# Installs what magnet's tests need (when missing) and runs them on the CPU backend and, through
# the software Vulkan driver, on the WGSL backend. A backend listed in MAGNET_TEST_BACKENDS that is
# unavailable fails the tests.
# Usage: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
install_packages libhdf5-dev pkg-config mesa-vulkan-drivers libvulkan1 dataset-fashion-mnist

# wgpu warns when XDG_RUNTIME_DIR is unset; give it a private one.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  export XDG_RUNTIME_DIR="$(mktemp -d)"
  chmod 700 "$XDG_RUNTIME_DIR"
fi

# The CUDA backend must keep compiling on a machine without CUDA, and the crate without its
# default features (no HDF5).
cargo check --all-targets --features cuda
cargo check --all-targets --no-default-features
# The CUDA backend's planning (what needs no device: how a call's scratch is split, ...).
cargo test --release --features cuda --lib backend::cuda
MAGNET_TEST_BACKENDS="${MAGNET_TEST_BACKENDS:-cpu,wgpu}" cargo test --release --features wgpu
