#!/usr/bin/env bash
# Times the U-Net (training step and inference, fp32 and TF32, batches 1, 8, 32 by default) in
# magnet and in PyTorch on the same GPU, prints the ratio table (magnet ms / PyTorch ms; below 1
# means magnet is faster) and writes both tables, the ratios, the machine, the command and the date
# to a markdown file, with the raw CSVs beside it.
#
# Usage: benches/compare_unet.sh [RESULT.md] [bench options...]
#   RESULT.md         default benches/results/unet_gpu.md; also writes RESULT.magnet.csv and
#                     RESULT.torch.csv
#   bench options     passed to both `magnet bench` and benches/torch_unet.py, e.g.
#                     --batches 1,8 --repeats 10 --modes tf32 --size 128 --base 32
# Environment:
#   MAGNET_BIN        the magnet binary (default target/release/magnet)
#   MAGNET_BACKEND    magnet's backend (default cuda; wgpu compares the WGSL backend)
#   MAGNET_ARGS       options for `magnet bench` only, e.g. "--fp32-conv-scratch-fit 0.1"
#   PYTHON            the Python with PyTorch (default python3)
#   TORCH_DEVICE      PyTorch's device (default cuda)
#   TORCH_CSV         an earlier PyTorch CSV of the same GPU to compare with, instead of running
#                     PyTorch again (its cudnn.benchmark search at batch 32 takes minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
result="${1:-benches/results/unet_gpu.md}"
[ $# -gt 0 ] && shift
MAGNET_BIN="${MAGNET_BIN:-target/release/magnet}"
[ -x "$MAGNET_BIN" ] || { echo "compare_unet.sh: no magnet binary at $MAGNET_BIN (set MAGNET_BIN)" >&2; exit 2; }
backend="${MAGNET_BACKEND:-cuda}"
python="${PYTHON:-python3}"
device="${TORCH_DEVICE:-cuda}"
mkdir -p "$(dirname "$result")"
stem="${result%.md}"
magnet_csv="$stem.magnet.csv"
torch_csv="$stem.torch.csv"

read -r -a magnet_only <<< "${MAGNET_ARGS:-}"
magnet_cmd=("$MAGNET_BIN" bench --backend "$backend" --output "$magnet_csv" "${magnet_only[@]}" "$@")
torch_cmd=("$python" benches/torch_unet.py --device "$device" --output "$torch_csv" "$@")
echo "== ${magnet_cmd[*]}"
"${magnet_cmd[@]}" | tee "$stem.magnet.txt"
if [ -n "${TORCH_CSV:-}" ]; then
    [ -f "$TORCH_CSV" ] || { echo "compare_unet.sh: no PyTorch CSV at $TORCH_CSV" >&2; exit 2; }
    [ "$TORCH_CSV" -ef "$torch_csv" ] || cp "$TORCH_CSV" "$torch_csv"
    torch_cmd=("(earlier run: $TORCH_CSV)")
else
    echo "== ${torch_cmd[*]}"
    "${torch_cmd[@]}" | tee "$stem.torch.txt"
fi

gpu="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -n1 || true)"
"$python" - "$magnet_csv" "$torch_csv" "$result" "$gpu" "${magnet_cmd[*]}" "${torch_cmd[*]}" <<'PY'
import csv, datetime, platform, sys

magnet_csv, torch_csv, result, gpu, magnet_cmd, torch_cmd = sys.argv[1:7]

def load(path):
    with open(path, newline="") as f:
        return {(r["part"], r["mode"], int(r["batch"])): r for r in csv.DictReader(f)}

m, t = load(magnet_csv), load(torch_csv)
keys = sorted(set(m) | set(t), key=lambda k: (k[0] != "train", k[1], k[2]))
parts = [p for p in ("train", "inference") if any(k[0] == p for k in keys)]
modes = [x for x in ("fp32", "tf32") if any(k[1] == x for k in keys)]
batches = sorted({k[2] for k in keys})

def ms(rows, key):
    r = rows.get(key)
    return float(r["median_ms"]) if r and r["median_ms"] else None

def ratio_table():
    lines = ["| part | mode | " + " | ".join(f"batch {b}" for b in batches) + " |",
             "|---|---|" + "---|" * len(batches)]
    for p in parts:
        for x in modes:
            cells = []
            for b in batches:
                a, c = ms(m, (p, x, b)), ms(t, (p, x, b))
                cells.append(f"{a / c:.2f} ({a:.1f} / {c:.1f} ms)" if a and c else "n/a")
            lines.append(f"| {p} | {x} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

def detail_table(rows, title):
    lines = [f"### {title}", "", "| part | mode | batch | median ms | images/s | TFLOP/s | peak MiB | status |",
             "|---|---|---|---|---|---|---|---|"]
    for k in keys:
        r = rows.get(k)
        if r:
            lines.append("| {part} | {mode} | {batch} | {median_ms} | {images_per_s} | {tflops} | {peak_mem_mib} | {status} |".format(**r))
    return "\n".join(lines)

ratios = ratio_table()
print("\nmagnet ms / PyTorch ms (below 1: magnet is faster)\n")
print(ratios)
any_row = next(iter(m.values()), None) or next(iter(t.values()), {})
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
text = f"""# U-Net on the GPU: magnet vs PyTorch

U-Net base {any_row.get('base', '?')}, {any_row.get('size', '?')}×{any_row.get('size', '?')} RGB, 2 classes
({int(any_row.get('params', 0)) / 1e6:.1f} M parameters). Training step = forward, cross-entropy,
backward, Adam; inference = eval-mode forward. Median step time after warm-up, the device
synchronised around each step; both copy the batch from host memory each step. fp32 = strict
fp32 (TF32 off), tf32 = TF32 allowed in convolutions and matrix products; PyTorch runs
channels_last with cudnn.benchmark. Peak memory of the timed steps, less what was in use before
the network was built: magnet, the CUDA memory pool's high watermark (workspaces and per-call
scratch included); PyTorch, torch.cuda.max_memory_allocated, reset after the warm-up.

- Date: {now}
- Machine: {gpu or 'unknown GPU'}; {platform.node()} ({platform.platform()})
- Commands: `{magnet_cmd}` and `{torch_cmd}` (`benches/compare_unet.sh`)

## magnet ms / PyTorch ms (below 1: magnet is faster)

{ratios}

{detail_table(m, 'magnet')}

{detail_table(t, 'PyTorch')}
"""
with open(result, "w") as f:
    f.write(text)
print(f"\nwrote {result}")
PY
