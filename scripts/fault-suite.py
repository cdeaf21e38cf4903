#!/usr/bin/env python3
"""Issue 18's bad inputs and faults, every command, one table: for each case the exit status, whether
the message names the file and the problem, the peak resident memory of that process (from wait4,
per process, not sampled), the time, and whether the case held (no crash, no hang, nothing dropped,
memory under its bound). The Rust tests assert the same behaviours one by one; this is the view across
them with memory measured, for the closing table and for a reviewer to rerun.

    python3 scripts/fault-suite.py [--bin target/release] [--markdown out.md]

Needs the `chestx` and `chestx-torch` binaries (the model cases) and `$CHESTX_DATA` (real films,
DICOM and reports). Inputs are built in a temporary folder; nothing is kept. Exit 1 if a case failed.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CHESTX_DATA", ROOT.parent / "shared" / "data"))
MB = 1024 * 1024


class Case:
    def __init__(self, name, args, *, expect, says=(), rss_mb=200, limit=120, check=None, stdin=None):
        self.name, self.args, self.expect, self.says = name, args, expect, says
        self.rss_mb, self.limit, self.check, self.stdin = rss_mb, limit, check, stdin


def run(binary, case, timer):
    """(exit code or signal name, stdout + stderr, peak RSS MB, seconds). The peak comes from GNU
    time, a small process that forks the command: a child forked from this Python would inherit
    its resident size as a floor (Linux keeps ru_maxrss across execve)."""
    t = time.perf_counter()
    out = tempfile.TemporaryFile()
    rss_file = tempfile.NamedTemporaryFile(suffix=".rss")
    stdin = open(case.stdin, "rb") if case.stdin else subprocess.DEVNULL
    p = subprocess.Popen([timer, "-q", "-f", "%M", "-o", rss_file.name, str(binary),
                          *map(str, case.args)], stdin=stdin, stdout=out, stderr=out,
                         start_new_session=True)
    try:
        status = p.wait(timeout=case.limit)
        code = status if status >= 0 else f"signal {signal.Signals(-status).name}"
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        code = "hang (killed)"
    out.seek(0)
    text = out.read().decode("utf-8", "replace")
    rss_text = Path(rss_file.name).read_text().split()
    rss = int(rss_text[-1]) / 1024 if rss_text and rss_text[-1].isdigit() else float("nan")
    if "Command terminated by signal" in " ".join(rss_text):
        code = "signal " + rss_text[rss_text.index("signal") + 1]
    return code, text, rss, time.perf_counter() - t


def png_claiming(width, height):
    """A tiny PNG whose header claims `width × height` (a decompression bomb's header)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    raw = zlib.compress(b"\x00" * 4096)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def dicom_claiming_4gb():
    """A Part-10 file whose Pixel Data element says 0xFFFFFFF0 bytes follow (a few do)."""
    def el(group, elem, vr, value):
        if vr in (b"OB", b"OW", b"UN"):
            return struct.pack("<HH", group, elem) + vr + b"\0\0" + struct.pack("<I", len(value)) + value
        return struct.pack("<HH", group, elem) + vr + struct.pack("<H", len(value)) + value
    ts = b"1.2.840.10008.1.2.1\0"
    meta_body = el(0x0002, 0x0010, b"UI", ts)
    meta = el(0x0002, 0x0000, b"UL", struct.pack("<I", len(meta_body))) + meta_body
    body = (el(0x0028, 0x0002, b"US", struct.pack("<H", 1)) + el(0x0028, 0x0004, b"CS", b"MONOCHROME2 ")
            + el(0x0028, 0x0010, b"US", struct.pack("<H", 65535))
            + el(0x0028, 0x0011, b"US", struct.pack("<H", 65535))
            + el(0x0028, 0x0100, b"US", struct.pack("<H", 16))
            + el(0x0028, 0x0101, b"US", struct.pack("<H", 16))
            + el(0x0028, 0x0102, b"US", struct.pack("<H", 15))
            + el(0x0028, 0x0103, b"US", struct.pack("<H", 0))
            + struct.pack("<HH", 0x7FE0, 0x0010) + b"OW\0\0" + struct.pack("<I", 0xFFFFFFF0)
            + b"\0" * 512)
    return b"\0" * 128 + b"DICM" + meta + body


def truncated_tgz(src_tgz, out):
    data = Path(src_tgz).read_bytes()
    out.write_bytes(data[: len(data) // 3])
    return out


def rows_of(path):
    return sum(1 for _ in open(path, encoding="utf-8")) - 1 if Path(path).exists() else None


def poison(weights):
    """Every float32 tensor of a safetensors file set to NaN, in place."""
    b = bytearray(Path(weights).read_bytes())
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    for name, t in header.items():
        if name != "__metadata__" and t["dtype"] == "F32":
            a, e = t["data_offsets"]
            b[8 + n + a:8 + n + e] = struct.pack("<f", float("nan")) * ((e - a) // 4)
    Path(weights).write_bytes(bytes(b))


def tree_digest(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def build(t: Path, binary):
    """The inputs, and the cases over them."""
    films = sorted((DATA / "nih" / "images").glob("*.png"))[:3]
    reports = DATA / "openi" / "reports.csv"
    good = t / "reports.csv"
    good.write_text("id,findings,impression\nr1,No pneumothorax.,Small left effusion.\n"
                    "r2,Heart is enlarged.,Cardiomegaly.\nr3,Lungs are clear.,No acute disease.\n")
    (t / "empty.csv").write_bytes(b"")
    rnd = bytearray(os.urandom(200_000))
    (t / "noise.csv").write_bytes(bytes(rnd))
    fifo_dir = t / "fifo"
    fifo_dir.mkdir()
    (fifo_dir / "a.csv").write_text(good.read_text())
    os.mkfifo(fifo_dir / "pipe.csv")
    loop = t / "loop"
    loop.mkdir()
    (loop / "a.csv").write_text(good.read_text())
    (loop / "sub").mkdir()
    os.symlink("..", loop / "sub" / "up")
    os.symlink(".", loop / "self")
    huge = t / "huge.csv"
    huge.write_text("id,findings\nbig," + "Heart normal. " * 200_000 + "\nsmall,No effusion.\n")
    tgz = truncated_tgz(DATA / "openi" / "ecgen-radiology.tgz", t / "cut.tgz")
    (t / "bomb.png").write_bytes(png_claiming(20000, 20000))
    (t / "big.dcm").write_bytes(dicom_claiming_4gb())
    (t / "cut.png").write_bytes(films[0].read_bytes()[:5000])
    (t / "text.png").write_text("this is not a picture\n")
    export = t / "export"
    export.mkdir()
    for f in films:
        os.symlink(f, export / f.name)
    (export / "sub").mkdir()
    os.symlink("..", export / "sub" / "loop")
    (export / "bomb.png").write_bytes(png_claiming(20000, 20000))
    secret = t / "key"
    secret.write_text("a-test-key-of-at-least-16-bytes\n")
    entry = DATA / "nih" / "meta" / "Data_Entry_2017_v2020.csv.gz"
    ref = DATA / "nih" / "reference-preds" / "reproduce_chexnet_test_preds.csv"
    nolabels = t / "nolabels.csv"
    with gzip.open(entry, "rt") as f:
        lines = f.read().splitlines()
    nolabels.write_text("\n".join(l.replace("Finding Labels", "Findings") for l in lines[:50]) + "\n")
    pred_lines = ref.read_text().splitlines()
    dup = t / "dup.csv"
    dup.write_text("\n".join(pred_lines[:200] + pred_lines[1:50]) + "\n")
    header = pred_lines[0].split(",")
    drop = header.index(next(h for h in header if "Mass" in h))
    onecol = t / "dropped.csv"
    onecol.write_text("\n".join(",".join(c for i, c in enumerate(l.split(",")) if i != drop)
                                for l in pred_lines[:200]) + "\n")

    ds = t / "synth"
    subprocess.run([binary, "synth", "--n", "60", "--size", "64", "--procedural", "24", "-o", ds],
                   check=True, capture_output=True)
    model = ["--arch", "resnet18", "--input", "64", "--transition-dim", "16", "--epochs", "1",
             "--batch", "8", "--device", "cpu", "--classes", "Effusion,Mass,Nodule", "--threads", "2"]
    bad = t / "bad-run"
    started = t / "started"
    started.mkdir()

    def train(flag, value):
        settings = ["--width", "16", *model]
        i = settings.index(flag) if flag in settings else None
        if i is None:
            settings += [flag, value]
        else:
            settings[i + 1] = value
        return ["train", "--dataset", ds, "--out", bad, *settings]
    run_dir = t / "run"
    subprocess.run([binary, "train", "--dataset", ds, "--out", run_dir, "--width", "16", *model],
                   check=True, capture_output=True)
    unstarted = t / "unstarted"
    unstarted.mkdir()
    (unstarted / "config.json").write_text((run_dir / "config.json").read_text())
    nan_run = t / "nan-run"
    subprocess.run(["cp", "-r", run_dir, nan_run], check=True)
    for w in nan_run.glob("*.safetensors"):
        poison(w)
    missing_ds = t / "synth-missing"
    subprocess.run(["cp", "-r", ds, missing_ds], check=True)
    test_list = (missing_ds / "test_list.txt").read_text().split()
    (missing_ds / "images" / test_list[0]).unlink()
    broken_ds = t / "synth-broken"
    subprocess.run(["cp", "-r", ds, broken_ds], check=True)
    train_list = (broken_ds / "train_val_list.txt").read_text().split()
    (broken_ds / "images" / train_list[0]).unlink()
    cut = broken_ds / "images" / train_list[1]
    cut.write_bytes(cut.read_bytes()[:300])
    other_key = t / "other-key"
    other_key.write_text("another-key-of-at-least-16-bytes\n")
    pred_in = t / "pred"
    for sub in ("a", "b"):
        (pred_in / sub).mkdir(parents=True)
        (pred_in / sub / "x.png").write_bytes(films[0].read_bytes())
    (pred_in / "a" / "cut.png").write_bytes(films[1].read_bytes()[:4000])
    eval_out = t / "eval-elsewhere"
    run_before = tree_digest(run_dir)

    def run_untouched(_):
        return tree_digest(run_dir) == run_before, "run folder byte-identical"

    def outputs(folder, n):
        return lambda _: (len(list(Path(folder).glob("*.json"))) == n, f"{n} result files")

    def csv_rows(path, n):
        return lambda _: (rows_of(path) == n, f"{n} rows written (got {rows_of(path)})")

    def trained(folder):
        return lambda _: ((folder / "latest.safetensors").is_file(), "checkpoint written")

    def few_lines(text):
        lines = text.splitlines()
        return len(lines) <= 60 and "\x1b" not in text, f"{len(lines)} lines on the terminal, escaped"

    o = t / "out"
    return [
        Case("label: empty file", ["label", t / "empty.csv", "-o", o / "e.csv"], expect=(1, 2),
             says=("empty.csv",), rss_mb=50),
        Case("label: 200 KB of random bytes", ["label", t / "noise.csv", "-o", o / "n.csv"], expect=(1, 2),
             says=("noise.csv",), check=few_lines),
        Case("label: folder holding a FIFO", ["label", fifo_dir, "-o", o / "f.csv"], expect=1,
             says=("pipe.csv",), limit=30, check=csv_rows(o / "f.csv", 3)),
        Case("label: symlink loops", ["label", loop, "-o", o / "l.csv"], expect=1, says=("link loop",),
             check=csv_rows(o / "l.csv", 3)),
        Case("label: a 2.8 MB report", ["label", huge, "-o", o / "h.csv"], expect=1,
             says=("huge.csv", "over the limit"), check=csv_rows(o / "h.csv", 1)),
        Case("label: truncated .tgz", ["label", tgz, "-o", o / "t.csv"], expect=(1, 2), says=("cut.tgz",)),
        Case("label: reports on stdin", ["label", "-", "-o", o / "s.csv"], expect=0,
             stdin=good, rss_mb=50, check=csv_rows(o / "s.csv", 3)),
        Case("inspect: PNG claiming 20000x20000", ["inspect", t / "bomb.png"], expect=2,
             says=("bomb.png", "20000"), rss_mb=100),
        Case("inspect: DICOM Pixel Data claiming 4 GB", ["inspect", t / "big.dcm"], expect=2,
             says=("big.dcm",), rss_mb=100),
        Case("inspect: truncated PNG", ["inspect", t / "cut.png"], expect=2, says=("cut.png",)),
        Case("inspect: text named .png", ["inspect", t / "text.png"], expect=2, says=("text.png",)),
        Case("ingest: links, a loop and a bomb among films",
             ["ingest", export, "-o", o / "ds", "--secret-file", secret, "--size", "256"], expect=1,
             says=("bomb.png",), rss_mb=400, check=csv_rows(o / "ds" / "Data_Entry.csv", 3)),
        Case("ingest: resumed with another --size",
             ["ingest", export, "-o", o / "ds", "--secret-file", secret, "--size", "128"], expect=2,
             says=("size",)),
        Case("ingest: resumed with another secret",
             ["ingest", export, "-o", o / "ds", "--secret-file", other_key, "--size", "256"], expect=2,
             says=("secret",)),
        Case("ingest: --reports truncated .tgz",
             ["ingest", export, "-o", o / "ds2", "--secret-file", secret, "--reports", tgz], expect=(1, 2),
             says=("cut.tgz",), rss_mb=400),
        Case("auc: labels without Finding Labels", ["auc", "--pred", ref, "--labels", nolabels], expect=2,
             says=("nolabels.csv", "Finding Labels")),
        Case("auc: films listed twice", ["auc", "--pred", dup, "--labels", entry], expect=2,
             says=("dup.csv",)),
        Case("auc: a probability column missing", ["auc", "--pred", onecol, "--labels", entry], expect=0,
             says=("No prediction column for: Mass",)),
        Case("synth: --size 0", ["synth", "--n", "4", "--size", "0", "-o", o / "s0"], expect=2,
             says=("image side 0",)),
        Case("synth: --size 100000", ["synth", "--n", "4", "--size", "100000", "-o", o / "s1"], expect=2,
             says=("image side 100000",), rss_mb=100),
        *[Case(f"train: {a} {v}", train(a, v), expect=2, says=(s,), rss_mb=700, limit=60)
          for a, v, s in [("--width", "0", "width 0"), ("--input", "0", "input side 0"),
                          ("--input", "100000", "input side 100000"), ("--batch", "0", "batch size 0"),
                          ("--epochs", "0", "epochs"), ("--lr", "-1", "learning rate -1"),
                          ("--val-fraction", "1.5", "validation fraction 1.5")]],
        *[Case(f"train: width 8 at 64 px, try {k}",
               ["train", "--dataset", ds, "--out", t / f"w8-{k}", "--width", "8", *model], expect=0,
               rss_mb=1500, limit=300, check=trained(t / f"w8-{k}")) for k in range(1, 11)],
        Case("train: a class no film is positive for", train("--classes", "Effusion,Hernia"), expect=2,
             says=("positive for Hernia",), rss_mb=700),
        Case("train: a film missing, another truncated",
             ["train", "--dataset", broken_ds, "--out", t / "broken-run", "--width", "16", *model],
             expect=1, says=(train_list[0], train_list[1]), rss_mb=1500, limit=300),
        Case("train: --resume on a folder that is no run", ["train", "--resume", started], expect=2,
             says=("started", "not a run folder"), rss_mb=700),
        Case("train: --resume before the first checkpoint", ["train", "--resume", unstarted],
             expect=2, says=("no checkpoint yet",), rss_mb=700),
        Case("eval: NaN weights", ["eval", "--run", nan_run, "--device", "cpu", "-o", o / "ev-nan",
                                   "--overlays", "0", "--bootstrap", "10"], expect=2,
             says=("nan-run", "NaN"), rss_mb=1500, limit=120),
        Case("eval: -o elsewhere", ["eval", "--run", run_dir, "--device", "cpu", "-o", eval_out,
                                    "--overlays", "0", "--bootstrap", "10"], expect=0,
             rss_mb=1500, limit=300, check=run_untouched),
        Case("eval: a test film missing", ["eval", "--run", run_dir, "--dataset", missing_ds, "--device", "cpu",
                                           "-o", o / "ev-gone",
                                           "--overlays", "0", "--bootstrap", "10"], expect=1,
             says=(test_list[0],), rss_mb=1500, limit=300),
        Case("predict: NaN weights", ["predict", pred_in / "a" / "x.png", "--run", nan_run,
                                      "--thresholds", "0.5", "-o", o / "p-nan", "--device", "cpu"],
             expect=(1, 2), says=("nan-run", "NaN"), rss_mb=1500),
        Case("predict: a/x.png, b/x.png and a truncated film",
             ["predict", pred_in, "--run", run_dir, "--thresholds", "0.5", "-o", o / "p",
              "--device", "cpu"], expect=1, says=("cut.png",), rss_mb=1500,
             check=outputs(o / "p", 2)),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", type=Path, default=ROOT / "target" / "release")
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    binary = (args.bin / "chestx").resolve()
    timer = "/usr/bin/time"
    if not Path(timer).exists():
        sys.exit("needs GNU time at /usr/bin/time (Debian package `time`) to measure peak memory")
    rows, failed = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "out").mkdir()
        for case in build(t, binary):
            code, text, rss, secs = run(binary, case, timer)
            want = case.expect if isinstance(case.expect, tuple) else (case.expect,)
            problems = []
            if code not in want:
                problems.append(f"exit {code}, wanted {'/'.join(map(str, want))}")
            if "panicked" in text or "RUST_BACKTRACE" in text:
                problems.append("panic")
            for s in case.says:
                if s not in text:
                    problems.append(f"message lacks {s!r}")
            if rss > case.rss_mb:
                problems.append(f"{rss:.0f} MB over {case.rss_mb} MB")
            note = ""
            if case.check:
                good, note = case.check(text)
                if not good:
                    problems.append(note)
            lines = text.splitlines()
            first = next((l for l in lines if case.says and case.says[0] in l),
                         next((l for l in lines if "error" in l.lower()), "")).strip()
            rows.append((case.name, code, f"{rss:.0f} / {case.rss_mb}", f"{secs:.1f}",
                         "ok" if not problems else "FAIL: " + "; ".join(problems),
                         (first[:90] + "…") if len(first) > 90 else first))
            failed += bool(problems)
            print(f"{'ok  ' if not problems else 'FAIL'} {case.name}: exit {code}, {rss:.0f} MB, "
                  f"{secs:.1f} s{'; ' + '; '.join(problems) if problems else ''}", file=sys.stderr)
    out = io.StringIO()
    out.write("| case | exit | peak RSS MB / bound | s | outcome | first error line |\n")
    out.write("|---|---|---|---|---|---|\n")
    for r in rows:
        out.write("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |\n")
    out.write(f"\n{len(rows) - failed} of {len(rows)} cases held.\n")
    print(out.getvalue())
    if args.markdown:
        args.markdown.write_text(out.getvalue())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
