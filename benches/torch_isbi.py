"""The U-Net paper's ISBI 2012 experiment in PyTorch, as `examples/isbi_experiment.rs` runs it in
magnet, from the initial weights magnet wrote (init.h5), for a side-by-side comparison.

    target/release/examples/isbi_experiment --init-only --size 512 --base 64 --out runs/isbi
    python3 benches/torch_isbi.py --init runs/isbi/init.h5 --size 512 --base 64 --batch 1 \\
        --epochs 30 --out runs/isbi-torch

What matches magnet's run:
- data: ISBI 2012 slices 0-23 train, 24-29 test, from --data, else $MAGNET_DATA_DIR/isbi2012-em,
  else ../shared/data/isbi2012-em beside the repository; pixels as 8-bit gray / 255 (magnet's
  Sample, [0, 1], no normalisation); masks 0 (membrane) -> class 1, 255 (cell) -> class 0, any
  other value an error;
- resize to --size: images with the triangle filter of magnet's `Pipeline::resize` (PIL's
  bilinear: widened by the scale when shrinking, half-pixel centres, weights normalised), masks by
  nearest neighbour (the source pixel under each output pixel's centre); nothing changes at 512;
- model: scripts/torch_unet.py's UNet(1, 2, bilinear=False, base=--base) (transposed-convolution
  upsampling, batch norm; the layout and state_dict keys of magnet's UNet), its state_dict loaded
  from init.h5 by scripts/h5_to_torch.py's read_checkpoint with load_state_dict(strict=True);
- training: each epoch a shuffled order, full batches only (drop_last), random horizontal then
  vertical flip of each training image with probability 0.5; pixel-wise cross-entropy, mean over
  the pixels; constant learning rate, Adam lr 1e-3 (betas 0.9/0.999, eps 1e-8) and SGD lr 1e-2
  with momentum 0.9 (no dampening, no Nesterov), no weight decay; both optimisers see the same
  shuffles and flips;
- evaluation: test loss after every epoch; after a third, two thirds and all of the epochs the
  test set is scored again in eval mode (batch-norm running statistics), with the metrics of
  magnet's ConfusionMatrix (src/metrics.rs): membrane (class 1) IoU and Dice, pixel accuracy, mean
  IoU and Dice over the classes, all with the test pixels pooled, and the mean over test slices
  of each slice's mean IoU; the wall time is cumulative per optimiser, evaluations included.

What does not: the shuffles and flips come from NumPy's generator seeded by --seed, not magnet's
ChaCha streams, so the two engines see different orders and flips. The slices are decoded and
resized once and kept in memory (magnet decodes and resizes them every epoch on a loader thread,
ahead of the GPU). Strict fp32 by default (TF32 off in cuDNN and matmul); --tf32 allows it.
cudnn.benchmark on; model and batches channels_last.

Writes OUT/results.json (rewritten after every evaluation) in the shape of magnet's.
"""

import argparse
import importlib.util
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CLASSES = 2
TRAIN_SLICES = range(0, 24)
TEST_SLICES = range(24, 30)
OPTIMIZERS = [("Adam", "adam", 1e-3), ("SGD + momentum 0.9", "sgd", 1e-2)]


def load_module(name, relative):
    """A module of this repository imported by path (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, relative))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--init", default="runs/isbi/init.h5", help="magnet's init.h5")
    p.add_argument("--out", default="runs/isbi-torch", help="folder for results.json")
    p.add_argument("--data", help="the isbi2012-em folder (images/, masks/)")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--base", type=int, default=16)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--epochs", type=int, default=90)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tf32", action="store_true", help="allow TF32 in convolutions and matmul")
    args = p.parse_args(argv)
    if args.size <= 0 or args.size % 16:
        p.error(f"--size {args.size} must be a positive multiple of 16 (the U-Net pools 4 times)")
    if args.base < 1 or args.batch < 1 or args.epochs < 1:
        p.error("--base, --batch and --epochs must be at least 1")
    return args


# ---------------------------------------------------------------------------------------------
# Data, as magnet's Isbi2012 + Pipeline produce it.

def data_dir(explicit):
    if explicit:
        path = explicit
    elif os.environ.get("MAGNET_DATA_DIR"):
        path = os.path.join(os.environ["MAGNET_DATA_DIR"], "isbi2012-em")
    else:
        path = os.path.join(REPO, "..", "shared", "data", "isbi2012-em")
    if not (os.path.isdir(os.path.join(path, "images")) and os.path.isdir(os.path.join(path, "masks"))):
        sys.exit(f"ISBI 2012 data not found: looked for images/ and masks/ in {path}\n"
                 "(pass --data DIR, or set MAGNET_DATA_DIR to the folder that holds isbi2012-em/)")
    return path


def slice_file(folder, n):
    """The file of slice `n` in `folder` (any image extension magnet reads)."""
    for ext in (".png", ".jpg", ".jpeg", ".gif"):
        path = os.path.join(folder, f"{n}{ext}")
        if os.path.isfile(path):
            return path
    sys.exit(f"{os.path.join(folder, f'{n}.png')}: slice not found")


def load_slice(root, n):
    """(image [h, w] float32 in [0, 1], mask [h, w] uint8 classes) of slice `n`."""
    from PIL import Image

    image_path = slice_file(os.path.join(root, "images"), n)
    mask_path = slice_file(os.path.join(root, "masks"), n)
    with Image.open(image_path) as im:
        image = np.asarray(im.convert("L"), dtype=np.uint8).astype(np.float32) / np.float32(255.0)
    with Image.open(mask_path) as im:
        raw = np.asarray(im.convert("L"), dtype=np.uint8)
    return image, mask_classes(raw, mask_path, image.shape)


def mask_classes(raw, path, shape):
    """Membrane (0) -> 1, cell (255) -> 0; another value or another size is an error."""
    if raw.shape != shape:
        sys.exit(f"{path}: mask is {raw.shape[1]}x{raw.shape[0]}, image {shape[1]}x{shape[0]}")
    bad = raw[(raw != 0) & (raw != 255)]
    if bad.size:
        sys.exit(f"{path}: mask value {int(bad[0])} is neither 0 (membrane) nor 255 (cell)")
    return (raw == 0).astype(np.uint8)


def linear_weights(inp, out):
    """[out, inp] float32 matrix of magnet's `linear_weights`: a triangle of half-width
    max(1, inp / out) centred on each output pixel's centre, weights normalised (in float64)."""
    scale = inp / out
    support = max(scale, 1.0)
    m = np.zeros((out, inp), dtype=np.float64)
    for o in range(out):
        centre = (o + 0.5) * scale
        first = max(int(np.floor(centre - support)), 0)
        end = min(int(np.ceil(centre + support)), inp)
        i = np.arange(first, end)
        w = np.maximum(1.0 - np.abs((i + 0.5 - centre) / support), 0.0)
        m[o, first:end] = w / w.sum()
    return m.astype(np.float32)


def resize_image(image, size):
    """[h, w] float32 image resized to [size, size]: rows first, then columns, as magnet."""
    h, w = image.shape
    if (h, w) == (size, size):
        return image
    rows = image @ linear_weights(w, size).T
    return linear_weights(h, size) @ rows


def resize_mask(mask, size):
    """[h, w] classes resized to [size, size] by nearest neighbour (magnet's `resize_nearest`)."""
    h, w = mask.shape
    if (h, w) == (size, size):
        return mask
    nearest = lambda n, inp: np.minimum(((np.arange(n) + 0.5) * inp / n).astype(np.int64), inp - 1)
    return mask[nearest(size, h)][:, nearest(size, w)]


def load_split(root, slices, size):
    """(images [n, size, size] float32, masks [n, size, size] uint8) of `slices`, resized."""
    images, masks = [], []
    for n in slices:
        image, mask = load_slice(root, n)
        images.append(resize_image(image, size))
        masks.append(resize_mask(mask, size))
    return np.stack(images), np.stack(masks)


def epoch_batches(rng, n, batch):
    """Shuffled indices in full batches (the last partial batch dropped)."""
    order = rng.permutation(n)
    return [order[i:i + batch] for i in range(0, n - batch + 1, batch)]


def augment(rng, image, mask):
    """Horizontal, then vertical flip, each with probability 0.5."""
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if rng.random() < 0.5:
        image, mask = image[::-1], mask[::-1]
    return image, mask


def evaluation_points(epochs):
    """A third, two thirds and all of the epochs, each once (magnet's `evaluation_points`)."""
    points = []
    for p in (epochs // 3, 2 * epochs // 3, epochs):
        if not points or points[-1] != p:
            points.append(p)
    return points


# ---------------------------------------------------------------------------------------------
# Metrics, as magnet's ConfusionMatrix computes them.

def class_scores(counts):
    """Per-class (IoU, Dice) of a [C, C] (true, predicted) matrix; None where TP + FP + FN = 0."""
    iou, dice = [], []
    for c in range(counts.shape[0]):
        tp = int(counts[c, c])
        fn = int(counts[c].sum()) - tp
        fp = int(counts[:, c].sum()) - tp
        if tp + fp + fn == 0:
            iou.append(None)
            dice.append(None)
        else:
            iou.append(tp / (tp + fp + fn))
            dice.append(2 * tp / (2 * tp + fp + fn))
    return iou, dice


def mean_defined(values):
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def accuracy(counts):
    total = int(counts.sum())
    return int(np.trace(counts)) / total if total else None


class ConfusionMatrix:
    """Pooled (true, predicted) pixel counts and running per-image scores."""

    def __init__(self, classes=CLASSES):
        self.counts = np.zeros((classes, classes), dtype=np.int64)
        self.images = 0
        self.iou_sum = 0.0
        self.dice_sum = 0.0

    def add_image(self, counts):
        counts = np.asarray(counts, dtype=np.int64)
        self.counts += counts
        if accuracy(counts) is None:
            return
        iou, dice = class_scores(counts)
        self.images += 1
        self.iou_sum += mean_defined(iou) or 0.0
        self.dice_sum += mean_defined(dice) or 0.0

    def pooled(self):
        iou, dice = class_scores(self.counts)
        return {"class_iou": iou, "class_dice": dice, "mean_iou": mean_defined(iou),
                "mean_dice": mean_defined(dice), "pixel_accuracy": accuracy(self.counts)}

    def mean_iou_per_image(self):
        return self.iou_sum / self.images if self.images else None


def record(name, lr, epoch, train_loss, test_loss, matrix, seconds):
    pooled = matrix.pooled()
    return {"optimizer": name, "lr": lr, "epoch": epoch,
            "membrane_iou": pooled["class_iou"][1], "membrane_dice": pooled["class_dice"][1],
            "pixel_accuracy": pooled["pixel_accuracy"], "mean_iou": pooled["mean_iou"],
            "mean_dice": pooled["mean_dice"], "mean_iou_per_image": matrix.mean_iou_per_image(),
            "train_loss": train_loss, "test_loss": test_loss, "seconds": seconds}


def markdown(records):
    f = lambda x: "–" if x is None else f"{x:.3f}"
    lines = ["| optimiser | epoch | membrane IoU | membrane Dice | pixel accuracy | mean IoU | mean Dice "
             "| mean IoU per image | wall time |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        lines.append(f"| {r['optimizer']} | {r['epoch']} | {f(r['membrane_iou'])} | {f(r['membrane_dice'])} "
                     f"| {f(r['pixel_accuracy'])} | {f(r['mean_iou'])} | {f(r['mean_dice'])} "
                     f"| {f(r['mean_iou_per_image'])} | {r['seconds']:.0f} s |")
    return "\n".join(lines)


def write_json(path, doc):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Training (imports torch).

def check_config(attrs, args, path):
    """init.h5's model configuration must be the network this run builds."""
    config = attrs.get("config", {})
    want = {"model": "unet", "in_channels": 1, "classes": CLASSES, "base_channels": args.base,
            "upsampling": "transposed"}
    for key, value in want.items():
        if key not in config:
            sys.exit(f"{path}: no config attribute {key!r}; is it a magnet U-Net checkpoint?")
        got = config[key]
        got = got.decode() if isinstance(got, bytes) else got
        got = str(got) if isinstance(value, str) else int(got)
        if got != value:
            sys.exit(f"{path}: {key} is {got!r}, this run builds {value!r} (pass the same --base as magnet)")


class Experiment:
    def __init__(self, args, torch, device, train, test):
        import torch.nn.functional as F

        self.args, self.torch, self.F, self.device = args, torch, F, device
        self.train_images, self.train_masks = train
        self.test_images, self.test_masks = test
        self.memory_format = torch.channels_last

    def to_device(self, images, masks):
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(images)[:, None])
        y = torch.from_numpy(np.ascontiguousarray(masks).astype(np.int64))
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        return x, y.to(self.device, non_blocking=True)

    def train_epoch(self, model, optimizer, rng, epoch):
        model.train()
        total, batches = 0.0, 0
        for indices in epoch_batches(rng, len(self.train_images), self.args.batch):
            pairs = [augment(rng, self.train_images[i], self.train_masks[i]) for i in indices]
            x, y = self.to_device(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]))
            loss = self.F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = loss.item()
            if not np.isfinite(value):
                sys.exit(f"the loss diverged ({value}) at epoch {epoch}")
            total += value
            batches += 1
        return total / max(batches, 1)

    def evaluate(self, model):
        """Mean test loss (batch losses weighted by batch size) and the confusion matrix."""
        torch = self.torch
        model.eval()
        matrix = ConfusionMatrix()
        total, n_images = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(self.test_images), self.args.batch):
                x, y = self.to_device(self.test_images[start:start + self.args.batch],
                                      self.test_masks[start:start + self.args.batch])
                logits = model(x)
                n = x.shape[0]
                total += self.F.cross_entropy(logits, y).item() * n
                n_images += n
                cells = y * CLASSES + logits.argmax(dim=1)
                offsets = torch.arange(n, device=y.device).view(n, 1, 1) * CLASSES * CLASSES
                counts = torch.bincount((cells + offsets).flatten(), minlength=n * CLASSES * CLASSES)
                for image in counts.view(n, CLASSES, CLASSES).cpu().numpy():
                    matrix.add_image(image)
        return total / n_images, matrix


def main(argv=None):
    args = parse_args(argv)
    import torch

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("torch_isbi.py: CUDA is not available (pass --device cpu to run on the CPU)")
    if args.tf32 and not cuda:
        sys.exit(f"--tf32: the {device.type} device has no TF32 mode")
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cudnn.benchmark = True
    if not os.path.isfile(args.init):
        sys.exit(f"{args.init}: no such file (write it with isbi_experiment --init-only)")
    UNet = load_module("torch_unet_model", "scripts/torch_unet.py").UNet
    read_checkpoint = load_module("h5_to_torch", "scripts/h5_to_torch.py").read_checkpoint
    state_dict, _, attrs = read_checkpoint(args.init)
    check_config(attrs, args, args.init)

    root = data_dir(args.data)
    train = load_split(root, TRAIN_SLICES, args.size)
    test = load_split(root, TEST_SLICES, args.size)
    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"ISBI 2012 from {root}: {len(train[0])} training / {len(test[0])} test slices at "
          f"{args.size}×{args.size}, membrane = class 1\nPyTorch {torch.__version__} on {name}, "
          f"{'TF32 allowed' if args.tf32 else 'strict fp32'}; initial weights from {args.init}")

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "results.json")
    doc = {"engine": "pytorch", "backend": device.type, "device": name, "size": args.size,
           "base": args.base, "batch": args.batch, "epochs": args.epochs, "tf32": args.tf32,
           "seed": args.seed, "params": 0, "torch_version": torch.__version__,
           "init": os.path.basename(args.init), "records": []}
    experiment = Experiment(args, torch, device, train, test)
    total = time.perf_counter()
    for label, kind, lr in OPTIMIZERS:
        model = UNet(1, CLASSES, bilinear=False, base=args.base)
        model.load_state_dict(state_dict, strict=True)
        model = model.to(device, memory_format=torch.channels_last)
        doc["params"] = sum(p.numel() for p in model.parameters())
        if kind == "adam":
            optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        else:
            optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        rng = np.random.default_rng(args.seed)
        print(f"\n{label}, lr {lr}: U-Net (base {args.base}, {doc['params']} parameters), "
              f"batch {args.batch}, {args.epochs} epochs")
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        train_loss = None
        epoch = 0
        for stop in evaluation_points(args.epochs):
            while epoch < stop:
                epoch_start = time.perf_counter()
                train_loss = experiment.train_epoch(model, optimizer, rng, epoch + 1)
                test_loss, _ = experiment.evaluate(model)
                epoch += 1
                print(f"  epoch {epoch:2}  train loss {train_loss:.4f}  test loss {test_loss:.4f}  "
                      f"{time.perf_counter() - epoch_start:.1f} s", flush=True)
            test_loss, matrix = experiment.evaluate(model)
            doc["records"].append(record(label, lr, stop, train_loss, test_loss, matrix,
                                         time.perf_counter() - start))
            write_json(path, doc)
        del model, optimizer
    print("\n" + markdown(doc["records"]))
    print(f"results in {path}; total wall time {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()
