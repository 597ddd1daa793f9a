#!/usr/bin/python3
"""Writes the image-classifier conformance corpus (issue 27): torchvision's own builders,
made small (narrow widths, few blocks, small images), with seeded random weights, each
exported to ONNX at opsets 13 and 17 with a dynamic batch and with a fixed batch of 1,
and PyTorch's softmax on seeded inputs beside them.

    /usr/bin/python3 tests/zoo/make_corpus.py OUT_DIR [--full] [--families a,b]

OUT_DIR/manifest.tsv has a line per export:
    family  opset  batch  onnx_file  channels  height  width  classes  images
(batch is "dynamic" or "1"), and per family OUT_DIR/<family>.input.f32 (images x C x H x W)
and OUT_DIR/<family>.probs.f32 (images x classes), little-endian float32, row-major.
With --full the models are the full-size ImageNet ones at 224x224 (bench/model_zoo_speed.sh);
--opsets and --batches choose the exports (default: 13,17 and dynamic,1).

Nothing here is committed: tests/zoo_test.cc runs this script and keeps its output in a
cache named by the script's hash.
"""
import argparse
import copy
import os
import sys

import torch
import torch.nn as nn
import torchvision
from torchvision import models
from torchvision.models import convnext, efficientnet, mobilenetv2, regnet, resnet, vgg


def small(name):
    """The small model of a family and its input size."""
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 64), nn.ReLU(), nn.Linear(64, 10)), 16
    if name == "resnet18":
        return resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 1], num_classes=10), 32
    if name == "resnet50":
        return resnet.ResNet(resnet.Bottleneck, [1, 1, 1, 1], num_classes=10, width_per_group=16), 32
    if name == "alexnet":
        m = models.AlexNet(num_classes=10)
        m.classifier = nn.Sequential(nn.Dropout(), nn.Linear(256 * 6 * 6, 64), nn.ReLU(inplace=True), nn.Dropout(),
                                     nn.Linear(64, 64), nn.ReLU(inplace=True), nn.Linear(64, 10))
        return m, 224
    if name == "vgg11":
        cfg = [8, "M", 16, "M", 32, 32, "M", 64, 64, "M", 64, 64, "M"]
        m = vgg.VGG(vgg.make_layers(cfg), num_classes=10)
        m.classifier = nn.Sequential(nn.Linear(64 * 7 * 7, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, 64),
                                     nn.ReLU(True), nn.Dropout(), nn.Linear(64, 10))
        return m, 224
    if name == "squeezenet1_1":
        return models.squeezenet1_1(num_classes=10), 64
    if name == "googlenet":
        return models.GoogLeNet(num_classes=10, aux_logits=False, transform_input=True, init_weights=True), 64
    if name == "densenet121":
        return models.DenseNet(growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16, bn_size=2,
                               num_classes=10), 64
    if name == "mnasnet0_5":
        return models.MNASNet(0.5, num_classes=10), 64
    if name == "mobilenet_v2":
        return mobilenetv2.MobileNetV2(width_mult=0.25, num_classes=10), 64
    if name == "mobilenet_v3_small":
        return models.mobilenet_v3_small(width_mult=0.5, num_classes=10), 64
    if name == "shufflenet_v2":
        return models.ShuffleNetV2([2, 2, 2], [8, 16, 32, 64, 128], num_classes=10), 64
    if name == "efficientnet_b0":
        setting, last = efficientnet._efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=0.25)
        return efficientnet.EfficientNet(setting, 0.2, last_channel=last, num_classes=10), 64
    if name == "regnet_y_400mf":
        params = regnet.BlockParams.from_init_params(depth=4, w_0=16, w_a=8.0, w_m=2.0, group_width=8, se_ratio=0.25)
        return regnet.RegNet(params, num_classes=10), 64
    if name == "convnext_tiny":
        cfg = [convnext.CNBlockConfig(16, 32, 1), convnext.CNBlockConfig(32, 64, 1),
               convnext.CNBlockConfig(64, None, 1)]
        return convnext.ConvNeXt(cfg, num_classes=10), 64
    if name == "swin_t":
        return models.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 4],
                                      window_size=[4, 4], num_classes=10), 64
    if name == "vit_b_16":
        return models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32,
                                        mlp_dim=64, num_classes=10), 32
    raise SystemExit(f"unknown family {name}")


def full(name, classes=1000):
    """The full-size ImageNet model of a family, at 224x224 (of `classes` outputs)."""
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 224 * 224, 512), nn.ReLU(), nn.Linear(512, classes)), 224
    builder = {"shufflenet_v2": models.shufflenet_v2_x1_0}.get(name) or getattr(models, name)
    kwargs = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
    return builder(weights=None, num_classes=classes, **kwargs), 224


FAMILIES = ["mlp", "resnet18", "resnet50", "alexnet", "vgg11", "squeezenet1_1", "googlenet", "densenet121",
            "mnasnet0_5", "mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2", "efficientnet_b0",
            "regnet_y_400mf", "convnext_tiny", "swin_t", "vit_b_16"]


def randomise(model, gen, images):
    """Weights as a trained model's are, so that float32 rounding stays far below the
    tests' 1e-4 (a random deep network is chaotic: MobileNetV2's probabilities moved by
    0.13 between float32 and float64 before this): no parameter left at zero
    (torchvision zeroes biases and ViT's head; ConvNeXt's layer scale is 1e-6); batch
    norms with random affine weights and running statistics measured on the images, as
    training leaves them; and logits spread between images (each class's mean over the
    images taken away, a standard deviation of 1), so that top-1 answers differ."""
    for p in model.parameters():
        if p.abs().max() < 1e-4:
            p.data.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # (a cumulative average)
        m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5 + 0.75)
        m.bias.data.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    if norms:
        model.train()
        model(images)
        model.eval()
    # The last layer: its bias centred on the images (for a last Conv, SqueezeNet's, on
    # its output before the ReLU and pooling that follow), then scaled (the logits scale
    # with it: only homogeneous layers follow it).
    last = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
    seen = []
    hook = last.register_forward_hook(lambda m, i, o: seen.append(o))
    model(images)
    hook.remove()
    if last.bias is not None:
        dims = [0] + list(range(2, seen[0].dim()))
        last.bias.data -= seen[0].mean(dims)
    logits = model(images)
    spread = float((logits - logits.mean(0)).std())
    if spread > 0:
        last.weight.data *= 1.0 / spread
        if last.bias is not None:
            last.bias.data *= 1.0 / spread


def write_images(out):
    """JPEGs (and a PNG) of other sizes than 224x224, and torchvision's ImageNet inputs
    of them: Resize(256), CenterCrop(224) of the PIL image, as uint8 pixels (RGB planes),
    for tests/zoo_test.cc's check of coe's `resize`."""
    import numpy as np
    from PIL import Image
    from torchvision import transforms
    folder = os.path.join(out, "images")
    os.makedirs(folder)
    rng = np.random.default_rng(5)
    sizes = [(300, 200), (200, 300), (256, 256), (500, 375), (224, 224), (231, 257), (640, 427), (259, 301)]
    names = []
    for k, (w, h) in enumerate(sizes):
        base = Image.fromarray((rng.random((6, 6, 3)) * 255).astype("uint8")).resize((w, h), Image.BICUBIC)
        noisy = np.clip(np.asarray(base, dtype=np.float32) + rng.normal(0, 24, (h, w, 3)), 0, 255).astype("uint8")
        name = f"img{k}.{'png' if k == 5 else 'jpg'}"
        Image.fromarray(noisy).save(os.path.join(folder, name), quality=90)
        names.append(name)
    prep = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.PILToTensor()])
    pixels = torch.stack([prep(Image.open(os.path.join(folder, n)).convert("RGB")) for n in sorted(names)])
    pixels.numpy().astype("<f4").tofile(os.path.join(out, "images.pixels.f32"))


def export(model, size, path, opset, dynamic):
    x = torch.zeros(1, 3, size, size)
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None
    torch.onnx.export(model, x, path, opset_version=opset, input_names=["input"], output_names=["logits"],
                      dynamic_axes=axes, do_constant_folding=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--classes", type=int, default=1000, help="--full: the models' classes")
    ap.add_argument("--opsets", default="13,17")
    ap.add_argument("--batches", default="dynamic,1", help="which exports: a dynamic batch, a fixed batch of 1")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    lines = []
    for k, name in enumerate(args.families.split(",")):
        torch.manual_seed(1000 + k)
        model, size = full(name, args.classes) if args.full else small(name)
        model.eval()
        gen = torch.Generator().manual_seed(2000 + k)
        with torch.no_grad():
            # Images of their own levels per channel, with noise.
            level = torch.rand(args.images, 3, 1, 1, generator=gen) * 3 - 1.5
            images = level + torch.rand(args.images, 3, size, size, generator=gen) - 0.5
            randomise(model, gen, images)
            logits = model(images)
            if isinstance(logits, tuple):
                logits = logits[0]
            probs = torch.softmax(logits, dim=1)
            # Conditioning: float32 against float64 must be far below the tests' 1e-4
            # (not checked for --full: the bench's models, whose answers nobody compares).
            noise = 0.0
            if not args.full:
                exact = torch.softmax(copy.deepcopy(model).double()(images.double()), dim=1)
                noise = float((probs.double() - exact).abs().max())
            if noise > 2.5e-5:
                raise SystemExit(f"{name}: float32 and float64 probabilities differ by {noise:.2e}: "
                                 "too close to the tests' 1e-4")
        images.numpy().astype("<f4").tofile(os.path.join(args.out, f"{name}.input.f32"))
        probs.numpy().astype("<f4").tofile(os.path.join(args.out, f"{name}.probs.f32"))
        classes = probs.shape[1]
        for opset in [int(o) for o in args.opsets.split(",")]:
            for dynamic in [b == "dynamic" for b in args.batches.split(",")]:
                file = f"{name}.op{opset}.{'dyn' if dynamic else 'b1'}.onnx"
                export(model, size, os.path.join(args.out, file), opset, dynamic)
                lines.append(f"{name}\t{opset}\t{'dynamic' if dynamic else '1'}\t{file}\t3\t{size}\t{size}\t"
                             f"{classes}\t{args.images}\n")
        print(f"{name}: exported (float32 against float64: {noise:.1e})", file=sys.stderr)
    if not args.full:
        write_images(args.out)
    # The manifest last: a corpus without one is incomplete.
    with open(os.path.join(args.out, "manifest.tsv.tmp"), "w") as f:
        f.writelines(lines)
    os.replace(os.path.join(args.out, "manifest.tsv.tmp"), os.path.join(args.out, "manifest.tsv"))


if __name__ == "__main__":
    main()
