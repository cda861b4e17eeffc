"""PyTorch reference for `magnet bench`: the same U-Net (scripts/torch_unet.py, the common PyTorch
layout), a full training step (forward, cross-entropy, backward, Adam) and inference (eval-mode
forward under no_grad), per batch size and precision, median of timed steps after warm-up, with
the same columns as `magnet bench` (CSV with --output, JSON lines with --json).

    python3 benches/torch_unet.py --device cuda                    # 256x256, base 64, batches 1,8,32
    OMP_NUM_THREADS=2 /usr/bin/python3 benches/torch_unet.py --device cpu --size 64 --base 8 --batches 1,2

Settings: cudnn.benchmark on; channels_last (--no-channels-last for NCHW); mode fp32 turns TF32 off
(torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False), mode tf32
turns both on (n/a on the CPU). As in magnet, each step copies the batch from host memory to the
device (--resident keeps it there instead). Peak memory is torch.cuda.max_memory_allocated during
the timed steps, less what was allocated before the model was built (MiB).
"""

import argparse
import csv
import importlib.util
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
FORWARD_GFLOP_256_BASE64 = 96.3
COLUMNS = [
    "engine", "backend", "device", "mode", "part", "batch", "size", "base", "params",
    "median_ms", "images_per_s", "tflops", "peak_mem_mib", "status",
]


def load_unet():
    """The UNet class of scripts/torch_unet.py, imported by path."""
    path = os.path.join(HERE, "..", "scripts", "torch_unet.py")
    spec = importlib.util.spec_from_file_location("torch_unet_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.UNet


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--base", type=int, default=64)
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--modes", default="fp32,tf32")
    p.add_argument("--parts", default="train,inference")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--resident", action="store_true", help="keep the batch on the device")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of the table")
    p.add_argument("--output", help="also write the records to this CSV file")
    p.add_argument("--profile", action="store_true",
                   help="instead of timing, print the device time per kernel of the training step "
                        "(torch.profiler), per batch size and mode")
    args = p.parse_args()
    args.batches = [int(b) for b in args.batches.split(",") if b]
    args.modes = [m for m in args.modes.split(",") if m]
    args.parts = [x for x in args.parts.split(",") if x]
    for m in args.modes:
        if m not in ("fp32", "tf32"):
            p.error(f"unknown mode {m!r} (fp32, tf32)")
    for x in args.parts:
        if x not in ("train", "inference"):
            p.error(f"unknown part {x!r} (train, inference)")
    if args.size % 16 or args.size <= 0 or not args.batches or min(args.batches) < 1 or args.repeats < 1:
        p.error("size must be a positive multiple of 16, batches >= 1, repeats >= 1")
    return args


def table_header():
    return "{:9}  {:4}  {:>5}  {:>10}  {:>9}  {:>8}  {:>10}  status".format(
        "part", "mode", "batch", "median ms", "images/s", "TFLOP/s", "peak MiB")


def table_row(r):
    def cell(v, d):
        return "-" if v is None else f"{v:.{d}f}"
    return "{:9}  {:4}  {:>5}  {:>10}  {:>9}  {:>8}  {:>10}  {}".format(
        r["part"], r["mode"], r["batch"], cell(r["median_ms"], 2), cell(r["images_per_s"], 1),
        cell(r["tflops"], 3), cell(r["peak_mem_mib"], 0), r["status"])


def csv_value(v, decimals):
    return "" if v is None else f"{v:.{decimals}f}"


class Runner:
    """A model, its optimiser and a fixed random batch on the device."""

    def __init__(self, UNet, args, batch, device):
        torch.manual_seed(args.seed)
        self.device = device
        self.memory_format = torch.contiguous_format if args.no_channels_last else torch.channels_last
        self.model = UNet(3, 2, bilinear=False, base=args.base).to(device, memory_format=self.memory_format)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        images = torch.rand(batch, 3, args.size, args.size).contiguous(memory_format=self.memory_format)
        labels = torch.randint(0, 2, (batch, args.size, args.size))
        self.resident = args.resident
        if self.resident:
            images, labels = images.to(device), labels.to(device)
        self.images, self.labels = images, labels

    def batch(self):
        if self.resident:
            return self.images, self.labels
        return (self.images.to(self.device).contiguous(memory_format=self.memory_format),
                self.labels.to(self.device))

    def step(self, part):
        if part == "train":
            self.model.train()
            x, y = self.batch()
            loss = F.cross_entropy(self.model(x), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        else:
            self.model.eval()
            with torch.no_grad():
                x, _ = self.batch()
                self.model(x)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(runner, part, args, device):
    for _ in range(args.warmup):
        runner.step(part)
    sync(device)
    if device.type == "cuda":
        # The peak covers the timed steps only (cudnn.benchmark's trials happen in warm-up).
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.repeats):
        sync(device)
        start = time.perf_counter()
        runner.step(part)
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median_high(times)


def set_tf32(allow):
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow


def profile(UNet, args, device):
    """Device time per kernel of `args.repeats` training steps after warm-up, per batch and mode."""
    from torch.profiler import ProfilerActivity, profile as torch_profile
    for batch in args.batches:
        runner = Runner(UNet, args, batch, device)
        for mode in args.modes:
            set_tf32(mode == "tf32")
            for _ in range(args.warmup):
                runner.step("train")
            sync(device)
            with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(args.repeats):
                    runner.step("train")
                sync(device)
            print(f"\nPyTorch {torch.__version__}, batch {batch}, {mode}: device time of "
                  f"{args.repeats} training steps per kernel")
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=30,
                                            max_name_column_width=70))
        del runner
    set_tf32(False)


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("torch_unet.py: CUDA is not available")
    torch.backends.cudnn.benchmark = True
    UNet = load_unet()
    params = sum(p.numel() for p in UNet(3, 2, bilinear=False, base=args.base).parameters())
    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    gflop = FORWARD_GFLOP_256_BASE64 * (args.size / 256) ** 2 * (args.base / 64) ** 2
    if args.profile:
        profile(UNet, args, device)
        return
    if not args.json:
        layout = "NCHW" if args.no_channels_last else "channels_last"
        data = "resident batch" if args.resident else "batch copied from the host each step"
        print(f"PyTorch {torch.__version__} U-Net base {args.base}, {args.size}x{args.size}x3 -> 2 classes, "
              f"{params / 1e6:.1f} M parameters, {gflop:.1f} GFLOP forward per image")
        print(f"{device.type} on {name}; {layout}, cudnn.benchmark, {data}; "
              f"{args.warmup} warm-up steps, median of {args.repeats}")
        print(table_header())
    records = []
    for batch in args.batches:
        for part in args.parts:
            if cuda:
                torch.cuda.empty_cache()
                sync(device)
                baseline = torch.cuda.memory_allocated(device)
            runner, build_error = None, None
            try:
                runner = Runner(UNet, args, batch, device)
            except RuntimeError as e:
                build_error = e
            for mode in args.modes:
                r = {"engine": "pytorch", "backend": device.type, "device": name, "mode": mode,
                     "part": part, "batch": batch, "size": args.size, "base": args.base,
                     "params": params, "median_ms": None, "images_per_s": None, "tflops": None,
                     "peak_mem_mib": None, "status": "ok"}
                if build_error is not None:
                    r["status"] = f"error: {str(build_error).splitlines()[0]}"
                elif mode == "tf32" and not cuda:
                    r["status"] = f"n/a: the {device.type} device has no TF32 mode"
                else:
                    set_tf32(mode == "tf32")
                    try:
                        ms = time_steps(runner, part, args, device)
                        flop = gflop * 1e9 * (3 if part == "train" else 1) * batch
                        r["median_ms"] = ms
                        r["images_per_s"] = batch / (ms / 1e3)
                        r["tflops"] = flop / (ms / 1e3) / 1e12
                        if cuda:
                            peak = torch.cuda.max_memory_allocated(device) - baseline
                            r["peak_mem_mib"] = peak / 2**20
                    except RuntimeError as e:
                        r["status"] = f"error: {str(e).splitlines()[0]}"
                print(json.dumps(r) if args.json else table_row(r), flush=True)
                records.append(r)
            del runner
    set_tf32(False)
    if args.output:
        with open(args.output, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(COLUMNS)
            for r in records:
                w.writerow([r["engine"], r["backend"], r["device"], r["mode"], r["part"], r["batch"],
                            r["size"], r["base"], r["params"], csv_value(r["median_ms"], 3),
                            csv_value(r["images_per_s"], 2), csv_value(r["tflops"], 3),
                            csv_value(r["peak_mem_mib"], 1), r["status"]])
        if not args.json:
            print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
