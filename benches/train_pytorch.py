#!/usr/bin/env python3
"""PyTorch reference for `chestx-bench train`: the end-to-end step users feel — PNG decode, the
same augmentation (random square crop of 85-100% of the side, +-10% gain and bias), resize,
ImageNet normalization, then a training step of the same network — with a torchvision-style
DataLoader. Prints one JSON line."""
import argparse
import json
import os
import random
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
import torchvision.transforms.functional as TF

from model_pytorch import ChestNet, wcel

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class Pngs(Dataset):
    def __init__(self, files, size, seed):
        self.files, self.size, self.seed = files, size, seed

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        rng = random.Random(self.seed * 1_000_003 + i)
        img = Image.open(self.files[i]).convert("L")
        side = int(min(img.size) * rng.uniform(0.85, 1.0))
        x0 = rng.randint(0, img.size[0] - side)
        y0 = rng.randint(0, img.size[1] - side)
        img = img.crop((x0, y0, x0 + side, y0 + side)).resize((self.size, self.size), Image.BILINEAR)
        t = TF.to_tensor(img)
        t = (t * rng.uniform(0.9, 1.1) + rng.uniform(-0.1, 0.1)).clamp(0, 1).expand(3, -1, -1)
        return TF.normalize(t, MEAN, STD), torch.zeros(14)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", required=True)
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--input", type=int, default=224)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    dev = torch.device(a.device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    files = sorted(os.path.join(a.images, f) for f in os.listdir(a.images) if f.endswith(".png"))
    net = ChestNet(a.arch, 14, 1024, 10.0).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    dl = DataLoader(Pngs(files, a.input, 0), batch_size=a.batch, shuffle=True, num_workers=a.threads,
                    persistent_workers=True, prefetch_factor=2, drop_last=True,
                    pin_memory=dev.type == "cuda")
    net.train()
    done, t0, warm = 0, None, 2
    while done < a.steps + warm:
        for x, y in dl:
            y[:, 0] = 1.0  # some positives so W-CEL has both terms
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            opt.zero_grad()
            wcel(net(x), y).backward()
            opt.step()
            done += 1
            if done == warm:
                sync()
                t0 = time.perf_counter()
            if done >= a.steps + warm:
                break
    sync()
    ips = a.steps * a.batch / (time.perf_counter() - t0)
    print(json.dumps({"train_images_per_s": ips}))


if __name__ == "__main__":
    main()
