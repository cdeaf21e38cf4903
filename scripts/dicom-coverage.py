#!/usr/bin/env python3
"""DICOM coverage against a reference reader: pydicom (with pylibjpeg, pylibjpeg-libjpeg/-openjpeg/-rle
and pyjpegls for the compressed transfer syntaxes) decodes each file; `chestx inspect --preview` decodes
it too; the two pictures are compared by Pearson correlation on the same grid.

The reference picture is what chestx promises: the first frame, modality LUT then VOI window applied,
MONOCHROME1 inverted, colour reduced to luminance (ITU-R BT.601). Files the reference cannot decode, or
that hold no image, are listed and left out of the denominator.

Usage: scripts/dicom-coverage.py CHESTX_BINARY DICOM_FILES_OR_FOLDERS... [--json OUT]
(run with a Python that has pydicom and the pylibjpeg plug-ins, e.g. a venv made for it).
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array


def reference(path):
    ds = pydicom.dcmread(path, force=True)
    if "PixelData" not in ds:
        return None, "no pixel data"
    spp = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    photometric = str(getattr(ds, "PhotometricInterpretation", ""))
    if photometric == "PALETTE COLOR":
        return None, "palette colour"
    # The first frame; colour comes back as RGB whatever its stored form (as_rgb converts YBR once,
    # after the codec, which reports whether it already did).
    arr = pixel_array(ds, index=0, as_rgb=True)
    if spp == 3:
        arr = arr.astype(np.float64)
        return 0.299 * arr[..., 0] + 0.587 * arr[..., 1] + 0.114 * arr[..., 2], None
    arr = apply_modality_lut(arr, ds)
    arr = apply_voi_lut(arr, ds)
    arr = arr.astype(np.float64)
    if photometric == "MONOCHROME1":
        arr = -arr
    return arr, None


def ours(binary, path, png):
    r = subprocess.run([binary, "inspect", path, "--preview", png], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return None, (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]
    return np.asarray(Image.open(png).convert("F"), dtype=np.float64), None


def correlation(a, b):
    if a.shape != b.shape:
        b = np.asarray(Image.fromarray(b.astype(np.float32)).resize((a.shape[1], a.shape[0])), dtype=np.float64)
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else (1.0 if np.allclose(a, b) else 0.0)


def files(args):
    for p in args:
        if os.path.isdir(p):
            for root, _, names in os.walk(p):
                for n in sorted(names):
                    if n.lower().endswith(".dcm"):
                        yield os.path.join(root, n)
        else:
            yield p


def main():
    args = sys.argv[1:]
    out = None
    if "--json" in args:
        i = args.index("--json")
        out = args[i + 1]
        del args[i:i + 2]
    binary, inputs = args[0], args[1:]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(set(files(inputs))):
            try:
                ref, why = reference(path)
            except Exception as e:  # the reference cannot read it: not counted
                ref, why = None, f"reference: {type(e).__name__}: {e}"[:160]
            png = os.path.join(tmp, "p.png")
            got, err = ours(binary, path, png)
            row = {"file": os.path.basename(path), "reference": why or "decoded", "chestx": err or "decoded"}
            try:
                tsuid = str(pydicom.dcmread(path, force=True, stop_before_pixels=True).file_meta.TransferSyntaxUID)
            except Exception:
                tsuid = "?"
            row["transfer_syntax"] = tsuid
            if ref is not None and got is not None:
                row["correlation"] = round(correlation(ref, got), 4)
            rows.append(row)
    decodable = [r for r in rows if r["reference"] == "decoded"]
    ok = [r for r in decodable if r.get("correlation", 0) >= 0.98]
    summary = {
        "files": len(rows),
        "reference_decodes": len(decodable),
        "chestx_decodes": sum(1 for r in decodable if r["chestx"] == "decoded"),
        "agree": len(ok),
        "share": round(len(ok) / max(1, len(decodable)), 3),
        "rows": rows,
    }
    for r in rows:
        print(f"{r['file'][:44]:44} {r['transfer_syntax'][:24]:24} ref:{r['reference'][:28]:28} chestx:{r['chestx'][:60]:60} r={r.get('correlation', '-')}")
    print(f"\nreference decodes {summary['reference_decodes']} of {summary['files']}; chestx decodes "
          f"{summary['chestx_decodes']} of those and agrees (r >= 0.98) on {summary['agree']} ({summary['share']:.1%})")
    if out:
        with open(out, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
