#!/usr/bin/env python3
"""Parity fixtures for chestx-model: torchvision-layout models with random weights, and their
backbone features for a fixed input, which the Rust side must reproduce.

  scripts/parity.py fixture          # the tiny ResNet committed under crates/chestx-model/tests/fixtures
  scripts/parity.py full OUT_DIR     # full ResNet-18/34/50/101, DenseNet-121, AlexNet, VGG-16, GoogLeNet
                                     # (then: CHESTX_PARITY_DIR=OUT_DIR cargo test -p chestx-model --test parity)

Run it with the project venv (scripts/setup-venv.sh makes it): .venv/bin/python scripts/parity.py ...
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.resnet import BasicBlock
from safetensors.torch import save_file

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "crates", "chestx-model", "tests", "fixtures")


class TinyResNet(nn.Module):
    """torchvision's ResNet-18 layout (same attribute names, so the same state_dict keys) at 1/8 width."""

    def __init__(self, base=8):
        super().__init__()
        self.conv1 = nn.Conv2d(3, base, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in = base
        for i, width in enumerate([base, 2 * base, 4 * base, 8 * base]):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(2):
                s = stride if j == 0 else 1
                down = None
                if s != 1 or c_in != width:
                    down = nn.Sequential(nn.Conv2d(c_in, width, 1, s, bias=False), nn.BatchNorm2d(width))
                blocks.append(BasicBlock(c_in, width, s, down))
                c_in = width
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def randomize(model, seed):
    """Random weights and batch-norm statistics, so that eval-mode BN is really exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def features(arch, model, x):
    if arch.startswith("resnet"):
        return nn.Sequential(*list(model.children())[:-2])(x)
    if arch == "densenet121":
        return F.relu(model.features(x))
    if arch in ("alexnet", "vgg16"):
        return model.features(x)
    if arch == "googlenet":
        m = model
        x = m.maxpool1(m.conv1(x))
        x = m.maxpool2(m.conv3(m.conv2(x)))
        x = m.maxpool3(m.inception3b(m.inception3a(x)))
        for name in ["inception4a", "inception4b", "inception4c", "inception4d", "inception4e"]:
            x = getattr(m, name)(x)
        x = m.maxpool4(x)
        return m.inception5b(m.inception5a(x))
    raise ValueError(arch)


def build(arch):
    if arch == "googlenet":
        return torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True, transform_input=False)
    return getattr(torchvision.models, arch)(weights=None)


def main():
    torch.manual_seed(0)
    mode = sys.argv[1] if len(sys.argv) > 1 else "fixture"
    if mode == "fixture":
        model = randomize(TinyResNet(8), 1)
        x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            y = model(x)
        os.makedirs(FIXTURES, exist_ok=True)
        torch.save(model.state_dict(), os.path.join(FIXTURES, "tiny_resnet.pth"))
        save_file({"input": x.contiguous(), "features": y.contiguous()}, os.path.join(FIXTURES, "tiny_resnet_io.safetensors"))
        print("wrote tiny fixture:", tuple(y.shape))
    elif mode == "full":
        out = sys.argv[2]
        os.makedirs(out, exist_ok=True)
        for arch in ["resnet18", "resnet34", "resnet50", "resnet101", "densenet121", "alexnet", "vgg16", "googlenet"]:
            model = randomize(build(arch), 3)
            x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(4))
            with torch.no_grad():
                y = features(arch, model, x)
            torch.save(model.state_dict(), os.path.join(out, f"{arch}.pth"))
            save_file({"input": x.contiguous(), "features": y.contiguous()}, os.path.join(out, f"{arch}_io.safetensors"))
            print(arch, tuple(y.shape))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
