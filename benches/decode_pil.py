#!/usr/bin/env python3
"""Python reference for `chestx-bench decode`: the same per-image work with PIL + torchvision
transforms, on the same files, with the same number of worker threads. Prints one JSON line."""
import argparse
import glob
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import torch
from PIL import Image
from torchvision import transforms as T

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", required=True)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(1)  # parallelism comes from the worker threads, as in a DataLoader
    files = sorted(glob.glob(os.path.join(a.images, "*.png")))
    norm = T.Normalize(MEAN, STD)
    to512 = T.Compose([T.Resize((512, 512), antialias=True), T.ToTensor()])
    to224 = T.Compose([T.Resize((224, 224), antialias=True), T.ToTensor()])

    def work(path):
        img = Image.open(path).convert("L")  # RGBA films too, as chestx reads them
        a = norm(to512(img).expand(3, -1, -1))
        b = norm(to224(img).expand(3, -1, -1))
        return float(a[0, 0, 0]) + float(b[0, 0, 0])

    with ThreadPoolExecutor(a.threads) as ex:
        list(ex.map(work, files[:8]))  # warm-up
        t = time.perf_counter()
        for _ in range(a.passes):
            list(ex.map(work, files))
        secs = time.perf_counter() - t
    print(json.dumps({"images_per_s": a.passes * len(files) / secs, "images": len(files)}))


if __name__ == "__main__":
    main()
