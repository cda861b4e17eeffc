"""Converts a magnet HDF5 checkpoint into PyTorch files.

    python3 scripts/h5_to_torch.py CKPT.h5 MODEL.pt [--optimizer OPT.pt]
    python3 scripts/h5_to_torch.py --self-test

MODEL.pt receives the state_dict (PyTorch layout, every key of /state_dict, so
`model.load_state_dict(torch.load("MODEL.pt"), strict=True)` works); with --optimizer, OPT.pt
receives the optimiser state_dict rebuilt from /optimizer (parameter ids from its param_names,
hyper-parameters from its attributes where present, else the root attribute `lr` and PyTorch's
defaults), for `optimizer.load_state_dict`. The file
format is described in scripts/torch_to_h5.py and src/io/checkpoint.rs.

--self-test runs the round trip of scripts/torch_to_h5.py --self-test.
"""
import os
import sys

import h5py
import numpy as np


def read_checkpoint(path):
    """(state_dict, optimizer state_dict or None, attributes) of the checkpoint at `path`."""
    import torch

    with h5py.File(path, "r") as f:
        state_dict = {}
        for key, ds in f["state_dict"].items():
            value = ds[()]
            state_dict[key] = torch.from_numpy(np.array(value))
        attrs = {k: v for k, v in f.attrs.items()}
        if "config" in f:
            attrs["config"] = {k: v for k, v in f["config"].attrs.items()}
        optimizer = read_optimizer(f["optimizer"], f.attrs.get("lr")) if "optimizer" in f else None
    return state_dict, optimizer, attrs


# PyTorch's defaults, used for hyper-parameters the file does not carry (magnet writes none but
# the root attribute `lr` when the trainer stores it).
DEFAULTS = {
    "adam": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False,
             "maximize": False, "foreach": None, "capturable": False},
    "sgd": {"lr": 1e-2, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False,
            "maximize": False, "foreach": None},
}


def read_optimizer(group, root_lr=None):
    import torch

    names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs["param_names"]]
    state = {}
    states = group["state"] if "state" in group else {}
    for index, name in enumerate(names):
        if name not in states:
            continue
        entry = {}
        for role, ds in states[name].items():
            if role == "step":
                # PyTorch >= 1.12 keeps Adam's step as a float32 tensor; SGD keeps none.
                if group.attrs["kind"] == "adam":
                    entry["step"] = torch.tensor(float(ds[()]))
            else:
                entry[role] = torch.from_numpy(np.array(ds[()]))
        state[index] = entry
    hyper = {}
    for name, value in group.attrs.items():
        if name in ("kind", "param_names"):
            continue
        value = np.asarray(value)
        hyper[name] = tuple(float(v) for v in value) if value.ndim else float(value)
    for flag in ("amsgrad", "maximize", "foreach", "capturable", "differentiable", "fused", "nesterov"):
        if flag in hyper:
            hyper[flag] = bool(hyper[flag])
    kind = str(group.attrs["kind"])
    for name, value in DEFAULTS.get(kind, {}).items():
        if name == "lr" and root_lr is not None:
            value = float(root_lr)
        hyper.setdefault(name, value)
    hyper["params"] = list(range(len(names)))
    return {"state": state, "param_groups": [hyper]}


def main(argv):
    if argv == ["--self-test"]:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import torch_to_h5

        torch_to_h5.self_test()
        return
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--optimizer"):
        sys.exit(__doc__)
    import torch

    state_dict, optimizer, _ = read_checkpoint(argv[0])
    torch.save(state_dict, argv[1])
    if len(argv) == 4:
        if optimizer is None:
            sys.exit(f"{argv[0]}: no optimizer state in the checkpoint")
        torch.save(optimizer, argv[3])


if __name__ == "__main__":
    main(sys.argv[1:])
