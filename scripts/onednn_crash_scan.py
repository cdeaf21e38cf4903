#!/usr/bin/env python3
"""Plain-PyTorch scan for the oneDNN crash chestx works around (chestx_model::layout::must_run_nchw_on_cpu):
the weight gradient of a 1×1 stride-2 convolution (C → 2C channels) in channels-last memory, for each
input-channel count, map side and batch size, each trial in a forked child so a crash is recorded, not fatal.

  .venv/bin/python scripts/onednn_crash_scan.py THREADS cl|nchw CINS SIDES   e.g.  2 cl 4,8,12,16 16,32,56

Prints the (channels, side, batch) triples whose child died. Re-run it when PyTorch is upgraded."""
import os
import sys

import torch


def trial(cin, side, n, memory_format, steps=3):
    pid = os.fork()
    if pid == 0:
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(cin, 2 * cin, 1, stride=2, bias=False).to(memory_format=memory_format)
        for _ in range(steps):
            x = torch.randn(n, cin, side, side).to(memory_format=memory_format)
            conv(x).sum().backward()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return status == 0


def main():
    threads, fmt = int(sys.argv[1]), sys.argv[2]
    torch.set_num_threads(threads)
    memory_format = torch.channels_last if fmt == "cl" else torch.contiguous_format
    cins = [int(c) for c in sys.argv[3].split(",")]
    sides = [int(s) for s in sys.argv[4].split(",")]
    crashed = [(c, s, n) for c in cins for s in sides for n in range(1, 9)
               if not trial(c, s, n, memory_format)]
    print(f"torch {torch.__version__}, {threads} threads, {fmt}: crashed (channels, side, batch): {crashed}")


if __name__ == "__main__":
    main()
