#!/usr/bin/env python3
"""PyTorch reference for `chestx-bench model`: the same network (torchvision backbone without its
classifier + 3x3 transition conv + LSE pooling + linear), W-CEL loss and Adam, timed the same way.
Prints one JSON line. Run by `chestx-bench model` with the project venv's python."""
import argparse
import json
import os
import resource
import subprocess
import time

import torch
import torch.nn as nn

try:
    import torchvision
except ImportError:  # e.g. a GPU box with torch only: use the plain ResNet below
    torchvision = None


class _Bottleneck(nn.Module):
    def __init__(self, c_in, width, stride):
        super().__init__()
        c_out = width * 4
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class _ResNet50(nn.Module):
    """torchvision's ResNet-50 (v1.5) without torchvision, same layers and cost."""

    def __init__(self):
        super().__init__()
        layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        c_in = 64
        for i, (n, width) in enumerate(zip([3, 4, 6, 3], [64, 128, 256, 512])):
            for j in range(n):
                layers.append(_Bottleneck(c_in, width, 2 if j == 0 and i > 0 else 1))
                c_in = width * 4
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(2048, 1000)

    def children(self):
        return iter(list(self.body) + [self.fc])


class ChestNet(nn.Module):
    def __init__(self, arch, classes, dim, r):
        super().__init__()
        if torchvision is not None:
            m = getattr(torchvision.models, arch)(weights=None)
        elif arch == "resnet50":
            m = _ResNet50()
        else:
            raise SystemExit(f"torchvision is needed for {arch}")
        self.backbone = nn.Sequential(*list(m.children())[:-2])
        ch = m.fc.in_features
        self.transition = nn.Conv2d(ch, dim, 3, padding=1)
        self.prediction = nn.Linear(dim, classes)
        self.r = r

    def forward(self, x):
        t = self.transition(self.backbone(x)).flatten(2)
        m = t.amax(-1, keepdim=True).detach()
        pooled = m.squeeze(-1) + torch.log(torch.exp(self.r * (t - m)).mean(-1)) / self.r
        return self.prediction(pooled)


def wcel(logits, y):
    total = y.numel()
    p = y.sum().item()
    n = total - p
    bp = total / p if p > 0 else 0.0
    bn = total / n if n > 0 else 0.0
    pos = -nn.functional.logsigmoid(logits) * y
    neg = -nn.functional.logsigmoid(-logits) * (1 - y)
    return (bp * pos + bn * neg).mean()


def held_gpu_mb():
    """This process's GPU memory as nvidia-smi counts it (None when it is not listed)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, check=False).stdout
    except OSError:
        return None
    for line in out.splitlines():
        pid, _, mb = line.partition(",")
        if pid.strip() == str(os.getpid()):
            return float(mb)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--input", type=int, default=224)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cudnn-benchmark", action="store_true")
    ap.add_argument("--channels-last", action="store_true", help="tuned by hand: NHWC weights and input")
    a = ap.parse_args()
    torch.backends.cudnn.benchmark = a.cudnn_benchmark
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    net = ChestNet(a.arch, 14, 1024, 10.0).to(dev, memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.randn(a.batch, 3, a.input, a.input, device=dev).contiguous(memory_format=fmt)
    y = (torch.rand(a.batch, 14, device=dev) < 0.2).float()

    def train_step():
        opt.zero_grad()
        loss = wcel(net(x), y)
        loss.backward()
        opt.step()

    net.train()
    for _ in range(a.warmup):
        train_step()
    sync()
    t = time.perf_counter()
    for _ in range(a.steps):
        train_step()
    sync()
    train_ips = a.steps * a.batch / (time.perf_counter() - t)

    net.eval()
    with torch.no_grad():
        for _ in range(a.warmup):
            net(x)
        sync()
        t = time.perf_counter()
        for _ in range(a.steps):
            net(x)
        sync()
    infer_ips = a.steps * a.batch / (time.perf_counter() - t)
    out = {
        "train_images_per_s": train_ips,
        "infer_images_per_s": infer_ips,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch": torch.__version__,
        "torchvision": torchvision is not None,
    }
    if dev.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["held_gpu_mb"] = held_gpu_mb()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
