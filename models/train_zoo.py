#!/usr/bin/python3
"""Train the coe Fashion-MNIST model zoo and export it as ONNX + catalogue.toml.

Usage (from the repository root):
    /usr/bin/python3 models/train_zoo.py            # full run, writes models/zoo/
    /usr/bin/python3 models/train_zoo.py --bench    # time one training step per model
    /usr/bin/python3 models/train_zoo.py --only mlp32,cnn8_16   # retrain a subset
    /usr/bin/python3 models/train_zoo.py --only vgg_small       # add the optional VGG
    /usr/bin/python3 models/train_zoo.py --verify-only  # re-check ONNX in OpenCV, re-time

Needs Debian's python3-torch, python3-onnx and python3-numpy (scripts/install-deps.sh
--with-training); python3-opencv is optional and used to verify the exported models
with OpenCV DNN (the same importer the C++ side uses) and to measure latency.

Splits (binding):
    train       = first 50,000 official training images (the only data used for fitting)
    calibration = official training images 50,000..59,999 (never used for training or
                  early stopping; reported only)
    test        = official 10,000 t10k images

Every model takes a float32 tensor [N,1,28,28] already normalised as
x = (pixel/255 - MEAN) / STD and returns raw logits [N,10].
"""
import argparse
import gzip
import json
import math
import os
import random
import sys
import time

# With OpenMP's default (active, spinning) wait policy, two torch threads on a 2-core
# machine that is also compiling C++ slow down ~10x; passive waiting keeps them sane.
# Must be set before torch (libgomp) is loaded.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ZOO_DIR = os.path.join(HERE, "zoo")
DATA_DIR = "/usr/share/datasets/fashion-mnist"
MEAN = 0.2860
STD = 0.3530
LABELS = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
          "sneaker", "bag", "boot"]
N_TRAIN = 50000
CKPT_DIR = "/tmp/coe_zoo_ckpt"  # PyTorch state_dicts (not part of the repository)


# ----------------------------------------------------------------------------- data
def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load_data():
    tr_x = read_idx(os.path.join(DATA_DIR, "train-images-idx3-ubyte.gz"))
    tr_y = read_idx(os.path.join(DATA_DIR, "train-labels-idx1-ubyte.gz"))
    te_x = read_idx(os.path.join(DATA_DIR, "t10k-images-idx3-ubyte.gz"))
    te_y = read_idx(os.path.join(DATA_DIR, "t10k-labels-idx1-ubyte.gz"))
    assert tr_x.shape == (60000, 28, 28) and te_x.shape == (10000, 28, 28)

    def norm(x):
        x = torch.from_numpy(x.astype(np.float32)) * (1.0 / 255.0)
        return ((x - MEAN) / STD).unsqueeze(1).contiguous()

    def lab(y):
        return torch.from_numpy(y.astype(np.int64))

    return {
        "train": (norm(tr_x[:N_TRAIN]), lab(tr_y[:N_TRAIN])),
        "calib": (norm(tr_x[N_TRAIN:]), lab(tr_y[N_TRAIN:])),
        "test": (norm(te_x), lab(te_y)),
    }


def augment(x, gen, pad=2, flip=True):
    """Random crop with zero-padding (in normalised space the background value) + h-flip."""
    n = x.shape[0]
    bg = (0.0 - MEAN) / STD
    xp = F.pad(x, (pad, pad, pad, pad), value=bg)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    out = torch.empty_like(x)
    for ox in range(2 * pad + 1):
        for oy in range(2 * pad + 1):
            idx = ((dx == ox) & (dy == oy)).nonzero(as_tuple=True)[0]
            if idx.numel():
                out[idx] = xp[idx, :, oy:oy + 28, ox:ox + 28]
    if flip:
        fl = torch.rand(n, generator=gen) < 0.5
        idx = fl.nonzero(as_tuple=True)[0]
        if idx.numel():
            out[idx] = out[idx].flip(3)
    return out


# ----------------------------------------------------------------------------- models
class Linear(nn.Linear):
    """nn.Linear that computes through a 1x1 convolution outside ONNX export.

    Debian's torch 1.13 links the generic reference BLAS, so F.linear is ~8x slower than
    the oneDNN (MKL-DNN) convolution path on this CPU.  Same parameters, same maths; the
    exported graph uses the ordinary Gemm (torch.onnx.is_in_onnx_export()).
    """

    def forward(self, x):
        if torch.onnx.is_in_onnx_export() or x.dim() != 2:
            return F.linear(x, self.weight, self.bias)
        return F.conv2d(x[:, :, None, None], self.weight[:, :, None, None], self.bias).flatten(1)


# Only operators that OpenCV 4.6's ONNX importer handles: Conv, BatchNorm (eval),
# Relu, MaxPool/AveragePool, GlobalAveragePool, Add, Flatten, Gemm.
class LinearPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.AvgPool2d(2)
        self.fc = Linear(14 * 14, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(x), 1))


def mlp(hidden):
    layers = [nn.Flatten()]
    d = 28 * 28
    for h in hidden:
        layers += [Linear(d, h), nn.ReLU(inplace=True)]
        d = h
    layers.append(Linear(d, 10))
    return nn.Sequential(*layers)


def conv_bn(cin, cout, stride=1):
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def cnn8_16():
    return nn.Sequential(*conv_bn(1, 8), nn.MaxPool2d(2), *conv_bn(8, 16), nn.MaxPool2d(2),
                         nn.Flatten(), Linear(16 * 7 * 7, 10))


def cnn_tiny():
    """Strided convolutions instead of pooling: 5x5/2 -> 14x14, 3x3/2 -> 7x7."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
        *conv_bn(8, 16, stride=2), nn.Flatten(), Linear(16 * 7 * 7, 10))


def cnn_small():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.25), Linear(32 * 7 * 7, 64), nn.ReLU(inplace=True),
        Linear(64, 10))


def cnn_medium():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.3), Linear(64 * 7 * 7, 128), nn.ReLU(inplace=True),
        nn.Dropout(0.3), Linear(128, 10))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))

    def forward(self, x):
        o = F.relu(self.b1(self.c1(x)))
        o = self.b2(self.c2(o))
        s = x if self.short is None else self.short(x)
        return F.relu(o + s)


class ResNetSmall(nn.Module):
    """ResNet with 16/32/64 channels, 2 basic blocks per stage (6 blocks)."""

    def __init__(self, widths=(16, 32, 64), blocks=2):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(1, widths[0]))
        layers = []
        cin = widths[0]
        for i, w in enumerate(widths):
            for b in range(blocks):
                layers.append(BasicBlock(cin, w, 2 if (b == 0 and i > 0) else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = Linear(cin, 10)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def vgg_small():
    return nn.Sequential(
        *conv_bn(1, 32), *conv_bn(32, 32), nn.MaxPool2d(2),
        *conv_bn(32, 64), *conv_bn(64, 64), nn.MaxPool2d(2),
        *conv_bn(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), Linear(128, 10))


# name -> (constructor, description, training config)
# cfg: epochs, opt ("adam"/"sgd"), lr (peak), wd, bs, aug, seed, ls (label smoothing)
ZOO = {
    "linear_pool": (LinearPool, "linear classifier on 2x2-average-pooled pixels",
                    dict(epochs=6, opt="adam", lr=3e-3, wd=0.0, bs=256, aug=False, seed=11)),
    "linear": (lambda: mlp([]), "linear (softmax regression) classifier on raw pixels",
               dict(epochs=6, opt="adam", lr=2e-3, wd=0.0, bs=256, aug=False, seed=12)),
    "mlp32": (lambda: mlp([32]), "MLP 784-32-10",
              dict(epochs=12, opt="adam", lr=2e-3, wd=1e-4, bs=128, aug=False, seed=13)),
    "mlp128": (lambda: mlp([128]), "MLP 784-128-10",
               dict(epochs=12, opt="adam", lr=1.5e-3, wd=1e-4, bs=128, aug=False, seed=14)),
    "mlp256x2": (lambda: mlp([256, 256]), "MLP 784-256-256-10",
                 dict(epochs=12, opt="adam", lr=1e-3, wd=1e-4, bs=128, aug=False, seed=15)),
    "cnn_tiny": (cnn_tiny, "CNN with strided convs conv8(5x5/2)-conv16(3x3/2)-fc with BatchNorm",
                 dict(epochs=10, opt="adam", lr=3e-3, wd=1e-4, bs=128, aug=False, seed=21)),
    "cnn8_16": (cnn8_16, "CNN conv8-pool-conv16-pool-fc with BatchNorm",
                dict(epochs=10, opt="adam", lr=3e-3, wd=1e-4, bs=128, aug=False, seed=16)),
    "cnn_small": (cnn_small, "CNN conv16-pool-conv32-pool-fc64-fc",
                  dict(epochs=10, opt="adam", lr=2e-3, wd=1e-4, bs=128, aug=False, seed=17)),
    "cnn_medium": (cnn_medium, "CNN conv32-pool-conv64-pool-fc128-fc with dropout",
                   dict(epochs=10, opt="adam", lr=1.5e-3, wd=1e-4, bs=128, aug=False, seed=18)),
    "resnet_small": (ResNetSmall, "ResNet 16/32/64 channels, 6 basic blocks, crop+flip augmentation",
                     dict(epochs=10, opt="sgd", lr=0.1, wd=5e-4, bs=128, aug=True, seed=20)),
}
# Not part of the default run (did not fit the training-time budget on the 2-core build
# machine); train it into the zoo with --only vgg_small.
OPTIONAL = {
    "vgg_small": (vgg_small, "VGG-style CNN 32-32-64-64-128 with BatchNorm and global avg pool",
                  dict(epochs=6, opt="sgd", lr=0.1, wd=5e-4, bs=128, aug=True, seed=19)),
}
CLOUD = {"resnet_small", "vgg_small"}


# ----------------------------------------------------------------------------- counting
def count_macs(model):
    macs = [0]

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            macs[0] += out.numel() // out.shape[0] * (m.in_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Linear):
            macs[0] += m.in_features * m.out_features

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.Conv2d, nn.Linear))]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    model.train(was)
    for h in hs:
        h.remove()
    params = sum(p.numel() for p in model.parameters())
    return macs[0], params


# ----------------------------------------------------------------------------- training
def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def predict(model, x, bs=1000):
    model.eval()
    out = []
    for i in range(0, x.shape[0], bs):
        out.append(model(x[i:i + bs]))
    return torch.cat(out)


def train_model(name, data, log, smoke=False):
    ctor, desc, cfg = ZOO[name]
    seed_all(cfg["seed"])
    model = ctor()
    # channels_last is ~20% faster for the oneDNN convolutions on this CPU
    conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    mf = torch.channels_last if conv else torch.contiguous_format
    model = model.to(memory_format=mf)
    x, y = data["train"]
    n = x.shape[0] if not smoke else 1024
    bs = cfg["bs"]
    steps_per_epoch = n // bs  # drop the last partial batch
    epochs = cfg["epochs"] if not smoke else 1
    total = epochs * steps_per_epoch
    if cfg["opt"] == "adam":
        opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["wd"])
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=0.9, nesterov=True,
                              weight_decay=cfg["wd"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=total,
                                                pct_start=0.2, anneal_strategy="cos")
    gen = torch.Generator().manual_seed(cfg["seed"])
    t0 = time.time()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        tl, tc = 0.0, 0
        te = time.time()
        for s in range(steps_per_epoch):
            idx = perm[s * bs:(s + 1) * bs]
            xb, yb = x[idx], y[idx]
            if cfg["aug"]:
                xb = augment(xb, gen)
            xb = xb.contiguous(memory_format=mf)
            out = model(xb)
            loss = F.cross_entropy(out, yb, label_smoothing=cfg.get("ls", 0.0))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tl += loss.item() * bs
            tc += (out.argmax(1) == yb).sum().item()
        # progress only: the test set is *not* used for model selection (fixed epochs)
        log(f"  [{name}] epoch {ep + 1}/{epochs} loss {tl / (steps_per_epoch * bs):.4f} "
            f"train_acc {tc / (steps_per_epoch * bs):.4f} ({time.time() - te:.1f}s)")
    model.eval()
    model = model.to(memory_format=torch.contiguous_format)
    return model, time.time() - t0


def export_onnx(model, path):
    model.eval()
    dummy = torch.zeros(2, 1, 28, 28)
    torch.onnx.export(model, dummy, path, opset_version=13, input_names=["input"],
                      output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      do_constant_folding=True)
    import onnx
    m = onnx.load(path)
    if strip_noop_pads(m):
        onnx.save(m, path)
    onnx.checker.check_model(m)
    return sorted({n.op_type for n in m.graph.node})


def strip_noop_pads(m):
    """torch 1.13 exports AvgPool2d(2) as an all-zero Pad + AveragePool; drop the no-op Pad."""
    from onnx import numpy_helper
    g = m.graph
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in g.node
              if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    consts.update({i.name: numpy_helper.to_array(i) for i in g.initializer})
    graph_outputs = {o.name for o in g.output}
    removed = []
    for n in list(g.node):
        if n.op_type != "Pad" or len(n.input) < 2 or n.output[0] in graph_outputs:
            continue
        pads = consts.get(n.input[1])
        if pads is None or np.any(pads):
            continue
        for o in g.node:
            for k, i in enumerate(o.input):
                if i == n.output[0]:
                    o.input[k] = n.input[0]
        g.node.remove(n)
        removed.append(n)
    used = {i for n in g.node for i in n.input}
    for n in [n for n in g.node if n.op_type == "Constant" and n.output[0] not in used]:
        g.node.remove(n)
    return bool(removed)


# ----------------------------------------------------------------------------- OpenCV
def opencv_verify(path, x_test, y_test, torch_logits, log, runs=7):
    try:
        import cv2
    except ImportError:
        log("  OpenCV (python3-opencv) not installed: skipping verification")
        return None
    cv2.setNumThreads(1)
    try:
        net = cv2.dnn.readNetFromONNX(path)
    except cv2.error as e:
        return dict(problems=[f"readNetFromONNX failed: {e}"])
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    xs = x_test.numpy()
    outs = []
    for i in range(0, xs.shape[0], 256):
        net.setInput(np.ascontiguousarray(xs[i:i + 256]))
        outs.append(net.forward().copy())
    cv_logits = np.concatenate(outs)
    assert cv_logits.shape == (xs.shape[0], 10), cv_logits.shape
    # without PyTorch logits (--verify-only) the batch-size checks compare against the
    # batch-256 OpenCV outputs
    tl = torch_logits.numpy() if torch_logits is not None else cv_logits
    cv_acc = float((cv_logits.argmax(1) == y_test.numpy()).mean())
    max_diff = float(np.abs(cv_logits - tl).max())
    argmax_agree = float((cv_logits.argmax(1) == tl.argmax(1)).mean())
    # other batch sizes
    problems = []
    for b in (1, 7, 256):
        net.setInput(np.ascontiguousarray(xs[:b]))
        o = net.forward()
        if o.shape != (b, 10):
            problems.append(f"batch {b}: output shape {o.shape}")
            continue
        d = float(np.abs(o - tl[:b]).max())
        if d > 1e-3 * max(1.0, float(np.abs(tl[:b]).max())):
            problems.append(f"batch {b}: max |logit diff| {d:.2e}")
    # latency: batch 256, one thread, median of several runs
    batch = np.ascontiguousarray(xs[:256])
    net.setInput(batch)
    net.forward()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        net.setInput(batch)
        net.forward()
        times.append(time.perf_counter() - t)
    us = float(np.median(times)) / 256 * 1e6
    return dict(cv_acc=cv_acc, max_abs_diff=max_diff, argmax_agree=argmax_agree, latency_us=us,
                latency_min_us=float(np.min(times)) / 256 * 1e6, problems=problems)


# ----------------------------------------------------------------------------- outputs
def fmt_latency(us):
    return f"{us:.3g}" if us < 10 else f"{us:.1f}" if us < 1000 else f"{us:.0f}"


def write_catalogue(results):
    lines = [
        "# coe model catalogue: Fashion-MNIST zoo (trained by models/train_zoo.py; see models/README.md)",
        "[defaults]",
        'backend = "onednn"   # oneDNN (libcoe_onednn.so); "onnx" runs the same files on OpenCV DNN',
        "# latency_us below: OpenCV DNN's, from train_zoo.py; `coe record` writes the running",
        "# backend's own (latency_us and latency_ms) into REC.models.toml.",
        'site = "edge"',
        "input_shape = [1, 28, 28]",
        "labels = [" + ", ".join(f'"{l}"' for l in LABELS) + "]",
        "scale = 0.00392156862745098   # pixel * scale, then (x - mean) / std",
        f"mean = {MEAN:.4f}",
        f"std = {STD:.4f}",
    ]
    for r in sorted(results.values(), key=lambda r: r["macs"]):
        lines += [
            "",
            f"[models.{r['name']}]",
            f'path = "{r["name"]}.onnx"',
            f"macs = {r['macs']}        # measured multiply-adds per example",
            f"flops = {2 * r['macs']}       # 2 x macs",
            f"params = {r['params']}",
            f"latency_us = {fmt_latency(r['latency_us'])}   # OpenCV DNN, one thread, batch 256, measured by train_zoo.py"
            if r.get("latency_us") is not None else "# latency_us not measured (no OpenCV)",
        ]
        if r["name"] in CLOUD:
            lines.append('site = "cloud"')
        lines += [
            f'description = "{r["desc"]}"',
            f"# test_accuracy = {r['test_acc']:.4f} (PyTorch), calibration_accuracy = {r['calib_acc']:.4f}",
        ]
    with open(os.path.join(ZOO_DIR, "catalogue.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")


def error_overlap(results, preds, y_test, log):
    names = [n for n in sorted(results, key=lambda n: results[n]["macs"])]
    y = y_test.numpy()
    err = {n: preds[n] != y for n in names}
    log("\nPairwise test-error overlap: |A wrong & B wrong| / min(|A wrong|, |B wrong|)"
        " (lower = more complementary); diagonal = number of test errors")
    w = max(len(n) for n in names)
    log(" " * (w + 1) + " ".join(f"{n[:11]:>11}" for n in names))
    for a in names:
        row = []
        for b in names:
            if a == b:
                row.append(f"{err[a].sum():>11d}")
            else:
                both = (err[a] & err[b]).sum()
                row.append(f"{both / max(1, min(err[a].sum(), err[b].sum())):>11.3f}")
        log(f"{a:<{w}} " + " ".join(row))
    log("\nPairwise argmax agreement on test:")
    log(" " * (w + 1) + " ".join(f"{n[:11]:>11}" for n in names))
    for a in names:
        log(f"{a:<{w}} " + " ".join(f"{(preds[a] == preds[b]).mean():>11.4f}" for b in names))
    # oracle of the small models
    small = [n for n in names if results[n]["macs"] < 2_000_000]
    any_right = np.zeros_like(y, dtype=bool)
    for n in small:
        any_right |= ~err[n]
    log(f"\nOracle accuracy of the {len(small)} models under 2M MACs (any correct): "
        f"{any_right.mean():.4f}")


def bench(names):
    x = torch.randn(128, 1, 28, 28)
    y = torch.randint(0, 10, (128,))
    for name in names:
        ctor, _, cfg = ZOO[name]
        torch.manual_seed(0)
        m = ctor()
        macs, params = count_macs(m)
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
        m.train()
        for i in range(13):
            if i == 3:
                t = time.time()
            xb = augment(x, torch.Generator().manual_seed(i)) if cfg["aug"] else x
            loss = F.cross_entropy(m(xb), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        dt = (time.time() - t) / 10
        ep = dt * (N_TRAIN // 128)
        print(f"{name:14s} macs {macs:>10d} params {params:>8d}  {dt * 1000:7.1f} ms/step(128) "
              f"-> {ep:6.1f} s/epoch x {cfg['epochs']} = {ep * cfg['epochs'] / 60:5.1f} min",
              flush=True)


def reverify(log):
    """Re-run the OpenCV checks and latency measurement on the saved zoo (no training)."""
    with open(os.path.join(ZOO_DIR, "results.json")) as f:
        results = {r["name"]: r for r in json.load(f)["models"]}
    data = load_data()
    for name, r in sorted(results.items(), key=lambda kv: kv[1]["macs"]):
        cv = opencv_verify(os.path.join(ZOO_DIR, name + ".onnx"), data["test"][0],
                           data["test"][1], None, log, runs=15)
        if cv is None:
            return
        problems = cv["problems"]
        if "cv_acc" in cv:
            if abs(cv["cv_acc"] - r["test_acc"]) > 0.0005:
                problems.append(f"OpenCV accuracy {cv['cv_acc']:.4f} != PyTorch {r['test_acc']:.4f}")
            r.update(cv_test_acc=cv["cv_acc"], latency_us=cv["latency_us"],
                     latency_min_us=cv["latency_min_us"], latency_loadavg=os.getloadavg()[0])
        r["cv_problems"] = problems
        log(f"{name:14s} cv_test {r.get('cv_test_acc', float('nan')):.4f} "
            f"(torch {r['test_acc']:.4f}) median {r.get('latency_us', float('nan')):8.2f} us/image "
            f"(min {r.get('latency_min_us', float('nan')):8.2f}, loadavg {os.getloadavg()[0]:.1f}) "
            f"problems: {problems or 'none'}")
    with open(os.path.join(ZOO_DIR, "results.json"), "w") as f:
        json.dump({"models": list(results.values())}, f, indent=1)
    write_catalogue(results)
    final_report(results, data, log)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--verify-only", action="store_true",
                    help="re-verify the saved ONNX files with OpenCV, re-measure latency, "
                         "rewrite catalogue.toml (no training)")
    ap.add_argument("--smoke", action="store_true",
                    help="1 epoch on 1024 images into /tmp/zoo_smoke (tests export + OpenCV)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if args.only:
        names = [n for n in list(ZOO) + list(OPTIONAL) if n in args.only.split(",")]
        ZOO.update({n: OPTIONAL[n] for n in names if n in OPTIONAL})
    else:
        names = list(ZOO)
    if args.bench:
        bench(names)
        return
    if args.verify_only:
        reverify(lambda m: print(m, flush=True))
        return

    global ZOO_DIR
    if args.smoke:
        ZOO_DIR = "/tmp/zoo_smoke"
    os.makedirs(ZOO_DIR, exist_ok=True)

    def log(msg):
        print(msg, flush=True)

    t_all = time.time()
    data = load_data()
    log(f"data: train {tuple(data['train'][0].shape)} calib {tuple(data['calib'][0].shape)} "
        f"test {tuple(data['test'][0].shape)}  (loaded in {time.time() - t_all:.1f}s)")
    res_path = os.path.join(ZOO_DIR, "results.json")
    results = {}
    if os.path.exists(res_path) and args.only:
        with open(res_path) as f:
            results = {r["name"]: r for r in json.load(f)["models"]}
    for name in names:
        ctor, desc, cfg = ZOO[name]
        log(f"=== {name}: {desc}  cfg={cfg}")
        model, train_s = train_model(name, data, log, smoke=args.smoke)
        if not args.smoke:
            os.makedirs(CKPT_DIR, exist_ok=True)
            torch.save(model.state_dict(), os.path.join(CKPT_DIR, name + ".pt"))
        macs, params = count_macs(model)
        tlog = predict(model, data["test"][0])
        clog = predict(model, data["calib"][0])
        test_acc = float((tlog.argmax(1) == data["test"][1]).float().mean())
        calib_acc = float((clog.argmax(1) == data["calib"][1]).float().mean())
        path = os.path.join(ZOO_DIR, name + ".onnx")
        ops = export_onnx(model, path)
        cv = opencv_verify(path, data["test"][0], data["test"][1], tlog, log)
        r = dict(name=name, desc=desc, macs=macs, params=params, test_acc=test_acc,
                 calib_acc=calib_acc, train_seconds=round(train_s, 1), cfg=cfg, onnx_ops=ops,
                 onnx_bytes=os.path.getsize(path))
        if cv:
            problems = cv["problems"]
            if "cv_acc" in cv:
                r.update(cv_test_acc=cv["cv_acc"], latency_us=cv["latency_us"],
                         cv_max_abs_diff=cv["max_abs_diff"], cv_argmax_agree=cv["argmax_agree"])
                if abs(cv["cv_acc"] - test_acc) > 0.0005:
                    problems.append(f"OpenCV accuracy {cv['cv_acc']:.4f} != PyTorch {test_acc:.4f}")
            r["cv_problems"] = problems
            for p in problems:
                log(f"  !!! OpenCV verification problem for {name}: {p}")
        # test-set argmax predictions as a digit string, for the error-overlap report
        r["test_pred"] = "".join(map(str, tlog.argmax(1).tolist()))
        results[name] = r
        log(f"--> {name}: macs {macs} params {params} calib {calib_acc:.4f} test {test_acc:.4f} "
            f"cv_test {r.get('cv_test_acc', float('nan')):.4f} "
            f"cv_us {r.get('latency_us', float('nan')):.2f} train {train_s:.0f}s "
            f"ops {ops} (elapsed {(time.time() - t_all) / 60:.1f} min)")
        with open(res_path, "w") as f:
            json.dump({"models": list(results.values())}, f, indent=1)

    write_catalogue(results)
    final_report(results, data, log)
    log(f"total wall time of this run {(time.time() - t_all) / 60:.1f} min")


def final_report(results, data, log):
    preds = {n: np.frombuffer(r["test_pred"].encode(), dtype=np.uint8) - ord("0")
             for n, r in results.items() if "test_pred" in r}
    log("\nSUMMARY (ascending MACs)")
    log(f"{'name':14s} {'MACs':>10s} {'params':>8s} {'calib':>7s} {'test':>7s} {'cv_test':>7s} "
        f"{'cv_us':>8s} {'train_s':>8s}")
    for r in sorted(results.values(), key=lambda r: r["macs"]):
        log(f"{r['name']:14s} {r['macs']:>10d} {r['params']:>8d} {r['calib_acc']:>7.4f} "
            f"{r['test_acc']:>7.4f} {r.get('cv_test_acc', float('nan')):>7.4f} "
            f"{r.get('latency_us', float('nan')):>8.2f} {r['train_seconds']:>8.0f}")
    bad = {n: r["cv_problems"] for n, r in results.items() if r.get("cv_problems")}
    log(f"OpenCV verification problems: {bad if bad else 'none'}")
    if len(preds) == len(results):
        error_overlap(results, preds, data["test"][1], log)
    total_bytes = sum(os.path.getsize(os.path.join(ZOO_DIR, n + ".onnx")) for n in results)
    log(f"\ntotal onnx size {total_bytes / 1e6:.2f} MB; sum of per-model training time "
        f"{sum(r['train_seconds'] for r in results.values()) / 60:.1f} min")


if __name__ == "__main__":
    main()
