#!/usr/bin/env python3
"""Exports a torchvision CNN (MobileNetV2 / V3, ResNet-18 ...) to ONNX for latency measurements.

The weights are torchvision's random initialisation (pretrained weights cannot be downloaded here); the
BatchNorm running statistics are set by a few training-mode passes over smooth synthetic images, so
activations have realistic ranges for calibration. Accuracy on such a model means nothing, latency does:
the architecture, shapes and operator mix are the real ones. Writes MODEL.onnx and MODEL-calib.npz
(input `image`, N x 3 x 224 x 224).

    pip install torchvision pillow
    python3 scripts/make_torchvision_cnn.py mobilenet_v2 /tmp/tv/mobilenet_v2.onnx
"""
import argparse

import numpy as np
import torch
import torchvision


def synthetic_images(count, size, generator):
    """Low-frequency colour fields plus noise, normalised like ImageNet inputs."""
    coarse = torch.rand(count, 3, 8, 8, generator=generator)
    images = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    images = images + 0.05 * torch.randn(count, 3, size, size, generator=generator)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (images.clamp(0, 1) - mean) / std


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("architecture", help="a torchvision.models constructor, e.g. mobilenet_v2")
    parser.add_argument("output", help="path of the .onnx file; the calibration rows go beside it")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--calib-rows", type=int, default=32)
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = getattr(torchvision.models, args.architecture)(weights=None)
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # cumulative average over the passes below
    with torch.no_grad():
        for _ in range(8):
            model(synthetic_images(16, args.size, generator))
    model.eval()

    example = synthetic_images(1, args.size, generator)
    torch.onnx.export(model, example, args.output, input_names=["image"], output_names=["logits"],
                      opset_version=17, dynamo=False)
    calib = synthetic_images(args.calib_rows, args.size, generator).numpy().astype(np.float32)
    np.savez(args.output.removesuffix(".onnx") + "-calib.npz", image=calib)
    print(f"wrote {args.output} ({sum(p.numel() for p in model.parameters())} parameters)")


if __name__ == "__main__":
    main()
