"""Converts a PyTorch checkpoint (.pt) into magnet's HDF5 checkpoint format.

    python3 scripts/torch_to_h5.py MODEL.pt OUT.h5 [--optimizer OPT.pt] [--config KEY=VALUE ...]
    python3 scripts/torch_to_h5.py --self-test

MODEL.pt holds a state_dict, or a dict with the state_dict under "state_dict" or "model" (and
then the optimiser's state_dict may sit under "optimizer"). --optimizer names a separate file
with an optimiser state_dict (Adam / AdamW or SGD). --config adds model configuration attributes
(`model=unet in_channels=3 classes=2 base_channels=64 upsampling=transposed`); integers are
stored as integers.

The format (version 1; src/io/checkpoint.rs documents it too):

    /                               attrs format="magnet-checkpoint", format_version=1,
                                    epoch, step, seed (uint64) when known
    /config                         the model configuration as attributes
    /state_dict/<key>               every state_dict tensor under its key, in PyTorch's layout
                                    (num_batches_tracked included, int64)
    /optimizer                      attrs kind="adam"|"sgd", param_names (parameter keys in
                                    model.parameters() order), hyper-parameters of group 0
    /optimizer/state/<key>/step     int64 scalar
    /optimizer/state/<key>/<buf>    exp_avg, exp_avg_sq or momentum_buffer

The optimiser's integer parameter ids are mapped to names by their order: id i is the i-th key of
the state_dict that is a parameter (not running_mean / running_var / num_batches_tracked), which
holds for models whose parameters() order is their state_dict order (every nn.Module without
shared or non-persistent tensors).

--self-test converts a small trained U-Net and its Adam state to HDF5 and back with
scripts/h5_to_torch.py and checks that every tensor round-trips exactly, that PyTorch's
load_state_dict(strict=True) accepts the result, and that training continues identically.
"""
import os
import sys
import tempfile

import h5py
import numpy as np

FORMAT = "magnet-checkpoint"
FORMAT_VERSION = 1
BUFFER_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")


def parameter_names(state_dict):
    """The parameter keys of a state_dict, in order (the optimiser's ids)."""
    return [k for k in state_dict if not k.endswith(BUFFER_SUFFIXES)]


def _numpy(t):
    return t.detach().cpu().contiguous().numpy()


def write_checkpoint(path, state_dict, optimizer=None, config=None, position=None, extra=None):
    """Writes `state_dict` (and an optimiser state_dict, config and position attributes) to
    `path` through a temporary file in the same directory, renamed at the end."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a checkpoint is an ordinary file
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = np.int64(FORMAT_VERSION)
            for name, value in (position or {}).items():
                f.attrs[name] = np.uint64(value)
            for name, value in (extra or {}).items():
                f.attrs[name] = value
            cfg = f.create_group("config")
            for name, value in (config or {}).items():
                cfg.attrs[name] = np.uint64(value) if isinstance(value, int) else value
            sd = f.create_group("state_dict")
            for key, value in state_dict.items():
                sd.create_dataset(key, data=_numpy(value))
            if optimizer is not None:
                write_optimizer(f, state_dict, optimizer)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_optimizer(f, state_dict, optimizer):
    names = parameter_names(state_dict)
    states = optimizer["state"]
    kinds = set()
    for entry in states.values():
        kinds.add("adam" if "exp_avg" in entry else "sgd")
    if len(kinds) > 1:
        raise ValueError("optimiser state mixes Adam and SGD entries")
    group = f.create_group("optimizer")
    group.attrs["kind"] = kinds.pop() if kinds else "adam"
    group.attrs["param_names"] = np.array(names, dtype=h5py.string_dtype())
    hyper = optimizer["param_groups"][0] if optimizer["param_groups"] else {}
    for name, value in hyper.items():
        if name == "params" or value is None:
            continue
        if isinstance(value, bool):
            group.attrs[name] = np.int64(value)
        elif isinstance(value, (int, float)):
            group.attrs[name] = np.float64(value)
        elif isinstance(value, (tuple, list)) and all(isinstance(v, (int, float)) for v in value):
            group.attrs[name] = np.array(value, dtype=np.float64)
    state_group = group.create_group("state")
    for index, entry in states.items():
        if index >= len(names):
            raise ValueError(f"optimiser state for parameter id {index}, but only {len(names)} parameters")
        g = state_group.create_group(names[index])
        step = entry.get("step", 0)
        step = int(step.item()) if hasattr(step, "item") else int(step)
        g.create_dataset("step", data=np.int64(step))
        for role, value in entry.items():
            if role != "step" and hasattr(value, "shape"):
                g.create_dataset(role, data=_numpy(value))


def load_torch(path):
    import torch

    obj = torch.load(path, map_location="cpu")
    optimizer = None
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                optimizer = obj.get("optimizer")
                obj = obj[key]
                break
    return obj, optimizer


def self_test():
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import h5_to_torch
    from torch_unet import UNet

    torch.manual_seed(0)
    model = UNet(3, 2, bilinear=False, base=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(2, 3, 32, 32)
    y = torch.randint(0, 2, (2, 32, 32))

    def step(m, o):
        o.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        o.step()

    for _ in range(2):
        step(model, opt)
    with tempfile.TemporaryDirectory() as d:
        h5 = os.path.join(d, "ckpt.h5")
        write_checkpoint(h5, model.state_dict(), opt.state_dict(),
                         config={"model": "unet", "in_channels": 3, "classes": 2,
                                 "base_channels": 4, "upsampling": "transposed"},
                         position={"epoch": 1, "step": 2, "seed": 0})
        sd, osd, _ = h5_to_torch.read_checkpoint(h5)
    for key, value in model.state_dict().items():
        assert torch.equal(sd[key], value) and sd[key].dtype == value.dtype, key
    restored = UNet(3, 2, bilinear=False, base=4)
    restored.load_state_dict(sd, strict=True)
    restored_opt = torch.optim.Adam(restored.parameters(), lr=1e-3)
    restored_opt.load_state_dict(osd)
    step(model, opt)
    step(restored, restored_opt)
    for (key, a), b in zip(model.state_dict().items(), restored.state_dict().values()):
        assert torch.equal(a, b), f"{key} differs after a resumed step"
    print("torch_to_h5 / h5_to_torch self-test passed")


def main(argv):
    if argv == ["--self-test"]:
        self_test()
        return
    if len(argv) < 2:
        sys.exit(__doc__)
    model_path, out = argv[0], argv[1]
    rest = argv[2:]
    state_dict, optimizer = load_torch(model_path)
    config = {}
    while rest:
        if rest[0] == "--optimizer" and len(rest) > 1:
            import torch

            optimizer = torch.load(rest[1], map_location="cpu")
            rest = rest[2:]
        elif rest[0] == "--config":
            rest = rest[1:]
            while rest and "=" in rest[0] and not rest[0].startswith("--"):
                k, v = rest[0].split("=", 1)
                config[k] = int(v) if v.isdigit() else v
                rest = rest[1:]
        else:
            sys.exit(__doc__)
    write_checkpoint(out, state_dict, optimizer, config=config)


if __name__ == "__main__":
    main(sys.argv[1:])
