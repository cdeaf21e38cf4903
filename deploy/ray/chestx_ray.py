#!/usr/bin/env python3
"""Run one chestx job as N shards on a Ray cluster, then merge them.

    python deploy/ray/chestx_ray.py --shards 64 --merge out/labels.csv -- \
        label reports.csv -o out/labels.csv --errors out/errors.csv

Every shard is one Ray task running `chestx ARGS --shard i/N` on whichever node Ray picks; the
output paths must be on a file system every node sees. A shard that already finished (its manifest
is there) returns at once, so rerunning the same command after a failure, a killed task or a lost
node redoes only the shards that did not finish. When all have, `chestx merge` joins them and
proves that every input was covered exactly once; nothing is merged otherwise.

Exit status: 0 when merged; 1 when merged but records failed inside the shards (each named in the
shards' error lists); 2 when shards did not finish (named, with their last words).
Connects to RAY_ADDRESS when set, else starts a local Ray.
"""
import argparse
import os
import subprocess
import sys

import ray


@ray.remote(num_cpus=1)
def run_shard(chestx, args, index, count):
    """One shard; returns (index, exit status, the end of its stderr)."""
    cmd = [chestx, *args, "--shard", f"{index}/{count}"]
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return index, p.returncode, p.stderr[-2000:]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chestx", default=os.environ.get("CHESTX_BIN", "chestx"),
                    help="the chestx binary (default: $CHESTX_BIN or chestx on PATH)")
    ap.add_argument("--shards", type=int, required=True, help="number of shards")
    ap.add_argument("--merge", required=True,
                    help="what to merge: the -o labels CSV of label, or the output folder of ingest/predict")
    ap.add_argument("--threads", type=int, default=1,
                    help="worker threads per shard (default 1: Ray runs one shard per CPU)")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="-- then the chestx command and its arguments")
    a = ap.parse_args(argv)
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    if not args or a.shards < 1:
        ap.error("give --shards N and, after --, the chestx command to shard")
    if a.shards == 1:
        ap.error("--shards 1 is the unsharded job: run chestx directly")
    args = ["--threads", str(a.threads), *args]
    ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False,
             log_to_driver=False)
    try:
        results = ray.get([run_shard.remote(a.chestx, args, i, a.shards) for i in range(a.shards)])
    finally:
        ray.shutdown()
    # Exit 1 is a shard that finished with records it could not use (they are listed); anything
    # else is a shard that did not finish.
    unfinished = [(i, rc, err) for i, rc, err in results if rc not in (0, 1)]
    for i, rc, err in unfinished:
        print(f"shard {i}/{a.shards} did not finish (exit {rc}):\n{err.strip()}", file=sys.stderr)
    if unfinished:
        print(f"{len(unfinished)} of {a.shards} shards did not finish: rerun the same command "
              f"(finished shards are skipped); nothing merged", file=sys.stderr)
        return 2
    merged = subprocess.run([a.chestx, "merge", a.merge])
    if merged.returncode != 0:
        return 2
    return 1 if any(rc == 1 for _, rc, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
