#!/usr/bin/env bash
# The U-Net paper's ISBI 2012 experiment in magnet (examples/isbi_experiment.rs) and in PyTorch
# (benches/torch_isbi.py) from the same initial weights, then one markdown table of both.
#
# Usage: benches/paper_isbi.sh RESULT.md [--size N] [--epochs N] [--base N] [--batch N]
#                              [--seed N] [--tf32] [--data DIR]
#   defaults: --size 512 --epochs 30 --base 64 --batch 1 --seed 0 (strict fp32); the test set is
#   scored after a third, two thirds and all of the epochs. The options go to both programs.
#
# 1. magnet writes the initial weights (isbi_experiment --init-only) to RUN/init/init.h5;
# 2. magnet trains (Adam, then SGD + momentum) into RUN/magnet, PyTorch loads RUN/init/init.h5 and
#    trains into RUN/torch: concurrently, magnet on CUDA device 0 and PyTorch on device 1
#    (CUDA_VISIBLE_DEVICES=1), when the machine has two GPUs; else one after the other on device 0;
# 3. both results.json are added to RESULT.json (runs of other settings already there are kept,
#    one of the same settings replaced) and RESULT.md is written from it: per size, optimiser and
#    epoch a magnet row and a PyTorch row. The check that magnet's training run started from
#    RUN/init/init.h5 (the same tensors, bit for bit) is noted there too.
#
# Environment:
#   MAGNET_ISBI_BIN  the example binary (default target/release/examples/isbi_experiment), built
#                    with `cargo build --release --example isbi_experiment --features cuda`
#   MAGNET_BACKEND   magnet's backend (default cuda)
#   PYTHON           the Python with PyTorch, h5py, NumPy and PIL (default python3)
#   TORCH_DEVICE     PyTorch's device (default cuda)
#   PARALLEL         auto (default: concurrently when there are two GPUs), 1 (concurrently, on
#                    one GPU if there is only one) or 0
#   RUN_ROOT         where the runs go (default runs/paper_isbi)
#   MAGNET_DATA_DIR  the folder holding isbi2012-em/ (else ../shared/data/isbi2012-em)
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "paper_isbi.sh: $*" >&2; exit 2; }
[ $# -ge 1 ] && [ "${1#-}" = "$1" ] || die "usage: benches/paper_isbi.sh RESULT.md [--size N] [--epochs N] [--base N] [--batch N] [--seed N] [--tf32] [--data DIR]"
result=$1
shift
size=512 epochs=30 base=64 batch=1 seed=0 tf32=0 data=""
while [ $# -gt 0 ]; do
  case $1 in
    --size | --epochs | --base | --batch | --seed | --data)
      [ $# -ge 2 ] || die "$1 needs a value"
      printf -v "${1#--}" %s "$2"
      shift 2
      ;;
    --tf32) tf32=1; shift ;;
    *) die "unknown option $1" ;;
  esac
done

bin="${MAGNET_ISBI_BIN:-target/release/examples/isbi_experiment}"
[ -x "$bin" ] || die "no magnet binary at $bin (cargo build --release --example isbi_experiment --features cuda, or set MAGNET_ISBI_BIN)"
backend="${MAGNET_BACKEND:-cuda}"
python="${PYTHON:-python3}"
torch_device="${TORCH_DEVICE:-cuda}"
common=(--size "$size" --epochs "$epochs" --base "$base" --batch "$batch" --seed "$seed")
[ "$tf32" = 1 ] && common+=(--tf32)
[ -n "$data" ] && common+=(--data "$data")
name="size${size}_epochs${epochs}_base${base}_batch${batch}_seed${seed}"
[ "$tf32" = 1 ] && name+="_tf32"
run="${RUN_ROOT:-runs/paper_isbi}/$name"
mkdir -p "$run" "$(dirname "$result")"

gpus=0
command -v nvidia-smi > /dev/null && gpus=$(nvidia-smi -L 2> /dev/null | grep -c '^GPU' || true)
case "${PARALLEL:-auto}" in
  auto) parallel=$([ "$gpus" -ge 2 ] && [ "$backend" = cuda ] && [ "$torch_device" = cuda ] && echo 1 || echo 0) ;;
  0 | 1) parallel=$PARALLEL ;;
  *) die "PARALLEL must be auto, 0 or 1" ;;
esac
magnet_device=()
[ "$backend" = cuda ] && magnet_device=(--device 0)

init_cmd=("$bin" --backend "$backend" "${magnet_device[@]}" --init-only --out "$run/init" "${common[@]}")
magnet_cmd=("$bin" --backend "$backend" "${magnet_device[@]}" --out "$run/magnet" "${common[@]}")
torch_cmd=("$python" benches/torch_isbi.py --device "$torch_device" --init "$run/init/init.h5"
  --out "$run/torch" "${common[@]}")

echo "== ${init_cmd[*]}"
"${init_cmd[@]}"
rm -f "$run/magnet/results.json" "$run/torch/results.json"
set +e
if [ "$parallel" = 1 ]; then
  torch_gpu=$([ "$gpus" -ge 2 ] && echo 1 || echo 0)
  mode="concurrently: magnet on CUDA device 0, PyTorch on device $torch_gpu"
  echo "== $mode"
  echo "== ${magnet_cmd[*]}"
  echo "== CUDA_VISIBLE_DEVICES=$torch_gpu ${torch_cmd[*]}"
  ("${magnet_cmd[@]}" 2>&1 | tee "$run/magnet.log" | sed -u 's/^/[magnet]  /') &
  magnet_pid=$!
  (CUDA_VISIBLE_DEVICES=$torch_gpu "${torch_cmd[@]}" 2>&1 | tee "$run/torch.log" | sed -u 's/^/[pytorch] /')
  torch_status=$?
  wait "$magnet_pid"
  magnet_status=$?
else
  mode="one after the other"
  [ "$backend" = cuda ] && mode+=" on CUDA device 0"
  echo "== $mode"
  echo "== ${magnet_cmd[*]}"
  "${magnet_cmd[@]}" 2>&1 | tee "$run/magnet.log"
  magnet_status=${PIPESTATUS[0]}
  echo "== ${torch_cmd[*]}"
  "${torch_cmd[@]}" 2>&1 | tee "$run/torch.log"
  torch_status=${PIPESTATUS[0]}
fi
set -e
[ "$magnet_status" = 0 ] || echo "paper_isbi.sh: magnet exited with $magnet_status (see $run/magnet.log)" >&2
[ "$torch_status" = 0 ] || echo "paper_isbi.sh: PyTorch exited with $torch_status (see $run/torch.log)" >&2

machine="$(nvidia-smi --query-gpu=index,name,driver_version --format=csv,noheader 2> /dev/null | sed 's/^/GPU /' | paste -sd ';' - || true)"
"$python" benches/paper_isbi_merge.py "$result" "$run" "$mode" "${machine:-unknown GPU}" \
  "${magnet_cmd[*]}" "${torch_cmd[*]}"
[ "$magnet_status" = 0 ] && [ "$torch_status" = 0 ]
