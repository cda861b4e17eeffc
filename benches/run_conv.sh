#!/usr/bin/env bash
# Times the CPU convolution benchmark in magnet and in PyTorch side by side and prints the ratio
# of the totals (magnet / PyTorch; below 1 means magnet is faster).
#
# Usage: benches/run_conv.sh [rounds]   (default 1; rounds alternate magnet and PyTorch so that
# both see the same machine load)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-1}"
python="${PYTHON:-/usr/bin/python3}"
export OMP_NUM_THREADS=2 RAYON_NUM_THREADS=2

cargo bench --bench conv --no-run
for round in $(seq "$rounds"); do
    echo "== round $round"
    magnet_out="$(cargo bench --bench conv 2>/dev/null)"
    torch_out="$("$python" benches/torch_conv.py)"
    paste -d'|' <(echo "$magnet_out") <(echo "$torch_out") |
        awk -F'|' '{ printf "%-64s | %s\n", $1, $2 }'
    magnet_total="$(echo "$magnet_out" | awk '$1 == "total:" { print $2 }')"
    torch_total="$(echo "$torch_out" | awk '$1 == "total:" { print $2 }')"
    awk -v m="$magnet_total" -v t="$torch_total" \
        'BEGIN { printf "total: magnet %.2f ms, PyTorch %.2f ms, ratio %.2f\n", m, t, m / t }'
done
