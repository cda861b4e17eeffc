"""PyTorch CPU reference for benches/conv.rs: the same 3x3, 64->64, padding-1 convolution on a
1x64x256x256 input (NCHW), forward, backward (both gradients), and each part on its own.

Run: OMP_NUM_THREADS=2 /usr/bin/python3 benches/torch_conv.py [repeats]
Prints one line per part in the same format as the Rust benchmark.
"""

import statistics
import sys
import time

import torch
import torch.nn.functional as F

THREADS = 2
WARMUP = 3


def median_ms(fn, repeats):
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    x = torch.randn(1, 64, 256, 256)
    w = torch.randn(64, 64, 3, 3)
    dy = torch.randn(1, 64, 256, 256)
    grad = torch.nn.grad
    gflop = 2.0 * 256 * 256 * 64 * 9 * 64 / 1e9

    with torch.no_grad():
        fwd = median_ms(lambda: F.conv2d(x, w, padding=1), repeats)
        bwd_data = median_ms(
            lambda: grad.conv2d_input(x.shape, w, dy, padding=1), repeats
        )
        bwd_filter = median_ms(
            lambda: grad.conv2d_weight(x, w.shape, dy, padding=1), repeats
        )

    xg = x.clone().requires_grad_(True)
    wg = w.clone().requires_grad_(True)

    def step():
        y = F.conv2d(xg, wg, padding=1)
        y.backward(dy)
        xg.grad = None
        wg.grad = None

    total = median_ms(step, repeats)

    print(
        f"torch {torch.__version__} conv2d 1x64x256x256 3x3 64->64 pad 1, "
        f"{torch.get_num_threads()} threads, median of {repeats}"
    )
    for name, ms, flops in [
        ("forward", fwd, gflop),
        ("backward_data", bwd_data, gflop),
        ("backward_filter", bwd_filter, gflop),
        ("total", total, 3 * gflop),
    ]:
        print(f"{name:>16}: {ms:8.2f} ms {flops / ms * 1e3:7.1f} GFLOP/s")


if __name__ == "__main__":
    main()
