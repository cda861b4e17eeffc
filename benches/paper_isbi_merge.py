"""Adds one run of benches/paper_isbi.sh (magnet's and PyTorch's results.json) to RESULT.json and
writes RESULT.md from it: per size, optimiser and epoch a magnet row beside a PyTorch row.

    python3 benches/paper_isbi_merge.py RESULT.md RUN_DIR MODE MACHINE MAGNET_CMD TORCH_CMD

RUN_DIR holds init/init.h5 (the weights both started from), magnet/ and torch/ (each with
results.json; magnet/ also with the init.h5 its training run wrote). Runs already in RESULT.json
with other settings are kept; one with the same settings is replaced. Needs only the standard
library; with h5py it also checks that magnet's training run started from RUN_DIR/init/init.h5.
"""

import datetime
import json
import os
import platform
import sys

SETTINGS = ("size", "epochs", "base", "batch", "seed", "tf32")
OPTIMIZER_ORDER = ("Adam", "SGD + momentum 0.9")


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def same_init(first, second):
    """Whether the state_dicts of two checkpoints are equal, in words."""
    missing = [p for p in (first, second) if not os.path.isfile(p)]
    if missing:
        return f"not checked ({', '.join(missing)} missing)"
    try:
        import h5py
        import numpy as np
    except ImportError:
        return "not checked (no h5py)"
    with h5py.File(first, "r") as a, h5py.File(second, "r") as b:
        keys = sorted(a["state_dict"])
        if keys != sorted(b["state_dict"]):
            return "no: the state_dict keys differ"
        for key in keys:
            if not np.array_equal(a["state_dict"][key][()], b["state_dict"][key][()]):
                return f"no: {key} differs"
    return f"yes, {len(keys)} state_dict tensors bit for bit"


def settings_of(run):
    doc = run.get("magnet") or run.get("pytorch")
    return tuple(doc[k] for k in SETTINGS)


def cell(x):
    return "–" if x is None else f"{x:.3f}"


def table(runs):
    lines = ["| size | optimiser | epoch | engine | membrane IoU | membrane Dice | pixel accuracy "
             "| mean IoU per image | wall time |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for run in runs:
        size, epochs, base, batch, seed, tf32 = settings_of(run)
        label = f"{size}×{size}" + (" TF32" if tf32 else "")
        engines = [(name, run.get(key)) for name, key in (("magnet", "magnet"), ("PyTorch", "pytorch"))]
        by_key = {}
        for name, doc in engines:
            for r in (doc or {}).get("records", []):
                by_key.setdefault((r["optimizer"], r["epoch"]), []).append((name, r))
        order = lambda k: (OPTIMIZER_ORDER.index(k[0]) if k[0] in OPTIMIZER_ORDER else len(OPTIMIZER_ORDER), k)
        for key in sorted(by_key, key=order):
            for name, r in by_key[key]:
                lines.append(f"| {label} | {r['optimizer']} | {r['epoch']} | {name} | {cell(r['membrane_iou'])} "
                             f"| {cell(r['membrane_dice'])} | {cell(r['pixel_accuracy'])} "
                             f"| {cell(r['mean_iou_per_image'])} | {r['seconds']:.0f} s |")
    return "\n".join(lines)


def run_notes(run):
    size, epochs, base, batch, seed, tf32 = settings_of(run)
    m, t = run.get("magnet"), run.get("pytorch")
    params = (m or t or {}).get("params")
    lines = [f"### {size}×{size}, base {base}, batch {batch}, {epochs} epochs, "
             f"{'TF32 allowed' if tf32 else 'strict fp32'}, seed {seed}", "",
             f"- Date: {run['date']}. Machine: {run['machine']}; {run['host']}.",
             f"- U-Net with {params} parameters." if params else "- U-Net: no run finished an evaluation.",
             f"- Ran {run['mode']}.",
             f"- magnet: {m['backend']} backend on {m['device']}." if m else "- magnet: no results.",
             f"- PyTorch {t.get('torch_version', '?')} on {t['device']}." if t else "- PyTorch: no results.",
             f"- Same initial weights (magnet's training run against the init.h5 PyTorch loaded): "
             f"{run['init_check']}.",
             f"- Commands: `{run['commands']['magnet']}` and `{run['commands']['pytorch']}` "
             f"(`benches/paper_isbi.sh`; $RUN is the run's folder under RUN_ROOT)."]
    return "\n".join(lines)


def render(runs):
    return f"""# The U-Net paper's ISBI 2012 experiment: magnet beside PyTorch

ISBI 2012 EM slices 0–23 for training, 24–29 for testing; membranes are class 1. A U-Net
(transposed-convolution upsampling, batch norm; `scripts/torch_unet.py` in PyTorch) trained once
with Adam (lr 1e-3) and once with SGD + momentum 0.9 (lr 1e-2), pixel-wise cross-entropy, random
horizontal and vertical flips. Both engines start from the same weights: magnet's seeded
initialisation, written to `init.h5` and loaded by PyTorch with `load_state_dict(strict=True)`.
Their shuffles and flips come from different random generators (magnet's ChaCha streams, NumPy's
in PyTorch), so the runs are alike in distribution, not step for step. Membrane IoU, Dice and the
pixel accuracy pool the pixels of the 6 test slices; the mean IoU per image averages each slice's
mean IoU over both classes. The wall time is cumulative per optimiser and includes the test loss
evaluated after every epoch and the scoring at each row's epoch.

{table(runs)}

## Runs

""" + "\n\n".join(run_notes(r) for r in runs) + "\n"


def portable(command, run_dir):
    """`command` without this machine's paths: the run folder as $RUN, others relative to here."""
    command = command.replace(os.path.abspath(run_dir), "$RUN").replace(run_dir, "$RUN")
    words = [os.path.relpath(w) if os.path.isabs(w) and w.startswith(os.getcwd()) else w
             for w in command.split(" ")]
    return " ".join(words)


def main(argv):
    if len(argv) != 6:
        sys.exit(__doc__)
    result, run_dir, mode, machine, magnet_cmd, torch_cmd = argv
    magnet = load(os.path.join(run_dir, "magnet", "results.json"))
    pytorch = load(os.path.join(run_dir, "torch", "results.json"))
    if magnet is None and pytorch is None:
        sys.exit(f"paper_isbi_merge.py: no results.json in {run_dir}/magnet or {run_dir}/torch")
    run = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "host": f"{platform.node()} ({platform.platform()})",
        "mode": mode,
        "commands": {"magnet": portable(magnet_cmd, run_dir),
                     "pytorch": portable(torch_cmd, run_dir)},
        "init_check": same_init(os.path.join(run_dir, "init", "init.h5"),
                                os.path.join(run_dir, "magnet", "init.h5")),
        "magnet": magnet,
        "pytorch": pytorch,
    }
    stem = result[:-3] if result.endswith(".md") else result
    store = f"{stem}.json"
    runs = [r for r in (load(store) or {}).get("runs", []) if settings_of(r) != settings_of(run)]
    runs.append(run)
    runs.sort(key=settings_of)
    with open(store, "w") as f:
        json.dump({"runs": runs}, f, indent=2)
        f.write("\n")
    text = render(runs)
    with open(result, "w") as f:
        f.write(text)
    print("\n" + table([run]))
    print(f"\nwrote {result} and {store}")


if __name__ == "__main__":
    main(sys.argv[1:])
