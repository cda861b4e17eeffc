#!/usr/bin/env bash
# Installs the Debian / Ubuntu packages magnet needs, when they are missing (so a ready machine
# needs no root). Sourced by scripts/train.sh and scripts/test.sh.
#   libhdf5-dev, pkg-config     the HDF5 library behind checkpoints and HDF5 data (feature `hdf5`)
#   mesa-vulkan-drivers,        a software Vulkan driver (lavapipe), so the WGSL backend runs
#   libvulkan1                  and is tested on machines without a GPU
#   dataset-fashion-mnist       the real Fashion-MNIST files a test and an example read
install_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  echo "installing ${missing[*]}" >&2
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y --no-install-recommends "${missing[@]}"
}
