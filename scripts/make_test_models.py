#!/usr/bin/env python3
"""Builds the small test models used by the runtime oracle checks (Tests/Fixtures/models/).

Each model comes from PyTorch with small random weights (seeded), exported to ONNX, with one input
batch saved as .npz next to it. The models cover the operators the FP32 runtime must run on real
CNNs and recurrent nets: BatchNorm, depthwise and grouped Conv, HardSwish, HardSigmoid, Resize
(nearest and bilinear), ConvTranspose, pooling, Gemm, LSTM and GRU. A copy of the CNN with its
weights as Constant nodes instead of initializers checks that both spellings behave the same.

    python3 scripts/make_test_models.py        # needs torch, onnx, numpy
"""
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "models")


class SqueezeExcite(nn.Module):
    def __init__(self, channels, reduced):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.relu(self.reduce(s))
        return x * F.hardsigmoid(self.expand(s))


class MixedCNN(nn.Module):
    """MobileNet/ResNet-style blocks, then a small decoder with ConvTranspose and Resize."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16),
                                  nn.Hardswish())
        self.depthwise = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16),
                                       nn.Hardswish())
        self.se = SqueezeExcite(16, 8)
        self.project = nn.Sequential(nn.Conv2d(16, 24, 1, bias=False), nn.BatchNorm2d(24))
        self.grouped = nn.Sequential(nn.Conv2d(24, 24, 3, padding=2, dilation=2, groups=4), nn.BatchNorm2d(24),
                                     nn.ReLU())
        self.down = nn.MaxPool2d(2)
        self.up = nn.ConvTranspose2d(24, 12, 3, stride=2, padding=1, output_padding=1)
        self.head = nn.Conv2d(12, 8, 1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = self.stem(x)                     # 16 x 16 x 16
        x = x + self.se(self.depthwise(x))   # residual
        x = self.project(x)
        x = x + self.grouped(x)
        x = self.down(x)                     # 24 x 8 x 8
        x = F.relu(self.up(x))               # 12 x 16 x 16
        x = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)  # 12 x 8 x 8
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")                        # 12 x 16 x 16
        features = F.leaky_relu(self.head(x), 0.1)                                    # 8 x 16 x 16
        x = F.max_pool2d(self.pool(features), 2)                                      # 8 x 4 x 4
        # The feature map is an output too: near-uniform log-probabilities of random weights alone
        # would hide small errors in the convolutions.
        return torch.log_softmax(self.fc(torch.flatten(x, 1)), dim=1), features


class RecurrentNet(nn.Module):
    """A bidirectional LSTM followed by a GRU and a linear head, over [batch, time, features]."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(12, 16, num_layers=1, batch_first=True, bidirectional=True)
        self.gru = nn.GRU(32, 20, batch_first=True)
        self.head = nn.Linear(20, 5)

    def forward(self, x):
        y, _ = self.lstm(x)
        y, h = self.gru(torch.tanh(y))
        return self.head(y[:, -1, :]), h


def randomize_batchnorm(model, generator):
    # Fresh BatchNorm layers are identities; give them real statistics so folding them matters.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


def export(model, example, path, input_names, output_names, dynamic_axes):
    torch.onnx.export(model, example, path, opset_version=17, input_names=input_names,
                      output_names=output_names, dynamic_axes=dynamic_axes, dynamo=False,
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True)
    onnx.checker.check_model(onnx.load(path))


def initializers_to_constants(source, target):
    """Rewrites every initializer as a Constant node at the front of the graph."""
    model = onnx.load(source)
    graph = model.graph
    constants = [onnx.helper.make_node("Constant", [], [t.name], value=t, name=f"const_{t.name}")
                 for t in graph.initializer]
    names = {t.name for t in graph.initializer}
    kept_inputs = [i for i in graph.input if i.name not in names]
    del graph.initializer[:]
    del graph.input[:]
    graph.input.extend(kept_inputs)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(constants + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, target)


def main():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    os.makedirs(OUT, exist_ok=True)

    cnn = MixedCNN()
    randomize_batchnorm(cnn, generator)
    cnn.eval()
    image = torch.randn(2, 3, 32, 32, generator=generator)
    cnn_path = os.path.join(OUT, "mixed-cnn.onnx")
    with torch.no_grad():
        export(cnn, (image,), cnn_path, ["image"], ["log_probs", "features"],
               {"image": {0: "batch"}, "log_probs": {0: "batch"}, "features": {0: "batch"}})
    np.savez(os.path.join(OUT, "mixed-cnn-input.npz"), image=image.numpy())
    initializers_to_constants(cnn_path, os.path.join(OUT, "mixed-cnn-constants.onnx"))

    rnn = RecurrentNet().eval()
    sequence = torch.randn(3, 7, 12, generator=generator)
    rnn_path = os.path.join(OUT, "recurrent.onnx")
    with torch.no_grad():
        export(rnn, (sequence,), rnn_path, ["sequence"], ["scores", "hidden"],
               {"sequence": {0: "batch", 1: "time"}, "scores": {0: "batch"}, "hidden": {1: "batch"}})
    np.savez(os.path.join(OUT, "recurrent-input.npz"), sequence=sequence.numpy())

    for name in sorted(os.listdir(OUT)):
        if name.endswith(".onnx"):
            ops = sorted({n.op_type for n in onnx.load(os.path.join(OUT, name)).graph.node})
            print(f"{name}: {', '.join(ops)}", file=sys.stderr)


if __name__ == "__main__":
    main()
