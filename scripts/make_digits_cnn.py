#!/usr/bin/env python3
"""Trains the demo model: a MobileNet-style CNN on scikit-learn's handwritten digits, exported to ONNX.

The 8x8 digit images (pixel values 0..16) are scaled to [0, 1] and enlarged 4x by pixel replication to
1x32x32, so the network sees a realistic image size while the data files stay small (replicated pixels
compress well in .npz). The 1797 images are split, stratified and seeded, into 1257 training and 540
test images; the calibration set is 256 images of the training split.

The network has the blocks of MobileNetV3: a Conv+BatchNorm+HardSwish stem, depthwise-separable blocks
(depthwise 3x3 + BatchNorm + HardSwish, pointwise 1x1 + BatchNorm), inverted residual blocks with a
squeeze-excite gate (GlobalAveragePool, 1x1 Conv, ReLU, 1x1 Conv, HardSigmoid, Mul) and a residual Add,
then GlobalAveragePool, Flatten and a Linear head (Gemm). BatchNorm stays in the exported graph
(TrainingMode.PRESERVE), so loading the model exercises BatchNorm folding.

Writes, into Sources/swiftquant/Resources/demo/ (SwiftPM resources must live inside the target that
bundles them; `swiftquant demo` reads them through Bundle.module):
  digits-cnn.onnx     opset 17, input "image" [batch, 1, 32, 32] float32, output "logits" [batch, 10]
  digits-calib.npz    image: 256 training images
  digits-test.npz     image: the 540 test images, label: their digits (int64)

With --large PATH.onnx it also writes the same block structure scaled to 3x224x224 inputs (stem and four
more blocks with stride 2, wider channels), with seeded random weights and BatchNorm statistics — a
benchmark model for the integer runtime, not committed — and PATH-calib.npz with 32 random images.

    python3 scripts/make_digits_cnn.py [--large /tmp/mobilenet-224.onnx]   # needs torch, scikit-learn, onnx
"""
import argparse
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

# The squeeze-excite block (GlobalAveragePool, 1x1 Conv, ReLU, 1x1 Conv, HardSigmoid, Mul) and the random
# BatchNorm statistics are the test models' own.
from make_test_models import SqueezeExcite, randomize_batchnorm

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Sources", "swiftquant", "Resources", "demo")
SEED = 0
UPSCALE = 4
TEST_SIZE = 540
CALIBRATION_ROWS = 256
EPOCHS = 30
MAX_BYTES = 5 * 1024 * 1024


def conv_bn(cin, cout, kernel, stride=1, groups=1, activation=True):
    layers = [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    if activation:
        layers.append(nn.Hardswish())
    return nn.Sequential(*layers)


class DepthwiseSeparable(nn.Module):
    """Depthwise 3x3 (stride s) + pointwise 1x1 projection."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.depthwise = conv_bn(cin, cin, 3, stride=stride, groups=cin)
        self.pointwise = conv_bn(cin, cout, 1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class InvertedResidual(nn.Module):
    """Expand 1x1, depthwise 3x3, squeeze-excite, project 1x1 (no activation), plus the input."""

    def __init__(self, channels, expanded):
        super().__init__()
        self.expand = conv_bn(channels, expanded, 1)
        self.depthwise = conv_bn(expanded, expanded, 3, groups=expanded)
        self.se = SqueezeExcite(expanded, max(8, expanded // 4))
        self.project = conv_bn(expanded, channels, 1, activation=False)

    def forward(self, x):
        return x + self.project(self.se(self.depthwise(self.expand(x))))


class MobileNetStyle(nn.Module):
    """stem, then ("ds", out, stride) and ("ir", expanded) blocks, then pooling and a linear head."""

    def __init__(self, in_channels, stem_channels, stem_stride, blocks, classes=10):
        super().__init__()
        self.stem = conv_bn(in_channels, stem_channels, 3, stride=stem_stride)
        layers, channels = [], stem_channels
        for block in blocks:
            if block[0] == "ds":
                layers.append(DepthwiseSeparable(channels, block[1], block[2]))
                channels = block[1]
            else:
                layers.append(InvertedResidual(channels, block[1]))
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Linear(channels, classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def digits_model():
    # 32x32 -> 16x16 -> 8x8
    return MobileNetStyle(1, 16, 1, [("ds", 24, 2), ("ir", 64), ("ds", 48, 2), ("ir", 96)])


def large_model():
    # 224 -> 112 (stem) -> 56 -> 28 -> 14 -> 7
    return MobileNetStyle(3, 16, 2, [("ds", 24, 2), ("ir", 72), ("ds", 40, 2), ("ir", 120), ("ds", 80, 2),
                                     ("ir", 240), ("ir", 240), ("ds", 160, 2), ("ir", 480)])


def load_images():
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    images = images.repeat(UPSCALE, axis=1).repeat(UPSCALE, axis=2)[:, None, :, :]
    return images, digits.target.astype(np.int64)


def shifted(batch, generator):
    """Random translations by up to one original pixel (4 enlarged pixels), zero-filled."""
    out = torch.zeros_like(batch)
    dy, dx = (torch.randint(-1, 2, (2,), generator=generator) * UPSCALE).tolist()
    size = batch.shape[-1]
    ys, yt = slice(max(0, -dy), size - max(0, dy)), slice(max(0, dy), size - max(0, -dy))
    xs, xt = slice(max(0, -dx), size - max(0, dx)), slice(max(0, dx), size - max(0, -dx))
    out[:, :, yt, xt] = batch[:, :, ys, xs]
    return out


def train(model, images, labels):
    generator = torch.Generator().manual_seed(SEED)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=EPOCHS * ((len(x) + 63) // 64))
    for epoch in range(EPOCHS):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), 64):
            index = order[start:start + 64]
            loss = F.cross_entropy(model(shifted(x[index], generator)), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
        if epoch % 10 == 9:
            print(f"epoch {epoch + 1}: loss {total / len(x):.4f}", file=sys.stderr)
    model.eval()


def accuracy(model, images, labels):
    with torch.no_grad():
        return float((model(torch.from_numpy(images)).argmax(1).numpy() == labels).mean())


def export(model, example, path):
    torch.onnx.export(model, (example,), path, opset_version=17, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True)
    model_proto = onnx.load(path)
    onnx.checker.check_model(model_proto, full_check=True)
    assert len(model_proto.graph.initializer) > 0, "weights must be initializers"


def write_large(path):
    torch.manual_seed(SEED + 1)
    generator = torch.Generator().manual_seed(SEED + 1)
    model = large_model()
    randomize_batchnorm(model, generator)
    model.eval()
    images = torch.rand(32, 3, 224, 224, generator=generator)
    with torch.no_grad():
        export(model, images[:1], path)
    calibration = os.path.splitext(path)[0] + "-calib.npz"
    np.savez(calibration, image=images.numpy())
    print(f"wrote {path} and {calibration}", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--large", help="also write the 224x224 variant (random weights) to this .onnx path")
    parser.add_argument("--output-dir", default=OUT, help="where the demo model and data go")
    args = parser.parse_args()

    # One thread: the model is small, results do not depend on the machine's core count, and several
    # threads on a busy machine make training many times slower.
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    images, labels = load_images()
    train_x, test_x, train_y, test_y = train_test_split(images, labels, test_size=TEST_SIZE, random_state=SEED,
                                                        stratify=labels)
    model = digits_model()
    train(model, train_x, train_y)
    train_accuracy, test_accuracy = accuracy(model, train_x, train_y), accuracy(model, test_x, test_y)
    print(f"accuracy: train {train_accuracy:.4f}, test {test_accuracy:.4f}", file=sys.stderr)
    if test_accuracy < 0.95:
        sys.exit(f"test accuracy {test_accuracy:.4f} is below 0.95; a 0.5-point drop would not mean much")

    os.makedirs(args.output_dir, exist_ok=True)
    model_path = os.path.join(args.output_dir, "digits-cnn.onnx")
    with torch.no_grad():
        export(model, torch.from_numpy(test_x[:1]), model_path)
    calibration_rows = np.random.RandomState(SEED).permutation(len(train_x))[:CALIBRATION_ROWS]
    np.savez_compressed(os.path.join(args.output_dir, "digits-calib.npz"), image=train_x[calibration_rows])
    np.savez_compressed(os.path.join(args.output_dir, "digits-test.npz"), image=test_x, label=test_y)

    # The ONNX file must classify as the PyTorch model did.
    import onnxruntime
    session = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    onnx_accuracy = float((session.run(None, {"image": test_x})[0].argmax(1) == test_y).mean())
    print(f"ONNX Runtime test accuracy: {onnx_accuracy:.4f}", file=sys.stderr)
    if abs(onnx_accuracy - test_accuracy) > 1e-9:
        sys.exit("the exported model disagrees with PyTorch")

    total = 0
    for name in ("digits-cnn.onnx", "digits-calib.npz", "digits-test.npz"):
        size = os.path.getsize(os.path.join(args.output_dir, name))
        total += size
        print(f"{name}: {size} bytes", file=sys.stderr)
    if total > MAX_BYTES:
        sys.exit(f"demo files take {total} bytes, more than {MAX_BYTES}")

    if args.large:
        write_large(args.large)


if __name__ == "__main__":
    main()
