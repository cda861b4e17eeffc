"""Writes the PyTorch U-Net fixtures that tests/checkpoint.rs loads into magnet's U-Net.

    OMP_NUM_THREADS=2 python3 scripts/make_unet_fixture.py

For each upsampling (transposed convolution, bilinear) it builds scripts/torch_unet.py's UNet with
base 4, 3 input channels and 2 classes from a fixed seed, gives the batch norms random affine
parameters, runs two train-mode forwards so the running statistics are non-trivial, switches to
eval mode and records the logits of a 2x3x32x32 batch. Each fixture is a magnet checkpoint
(scripts/torch_to_h5.py's format) with two more datasets:

    /fixture/input    float32 [2, 3, 32, 32]  (NCHW)
    /fixture/logits   float32 [2, 2, 32, 32]  (NCHW, eval mode)

into tests/fixtures/unet_base4_{transposed,bilinear}.h5.
"""
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_to_h5 import write_checkpoint  # noqa: E402
from torch_unet import UNet  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def make(bilinear, seed):
    torch.manual_seed(seed)
    model = UNet(3, 2, bilinear=bilinear, base=4)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, 3, 32, 32) * 2.0 + 0.5)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
    name = "bilinear" if bilinear else "transposed"
    path = os.path.join(ROOT, "tests", "fixtures", f"unet_base4_{name}.h5")
    config = {"model": "unet", "in_channels": 3, "classes": 2, "base_channels": 4, "upsampling": name}
    write_checkpoint(path, model.state_dict(), config=config)
    with h5py.File(path, "a") as f:
        f.create_dataset("fixture/input", data=x.numpy().astype(np.float32))
        f.create_dataset("fixture/logits", data=logits.numpy().astype(np.float32))
    print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    make(bilinear=False, seed=0)
    make(bilinear=True, seed=1)
