"""The NIH ChestX-ray14 release (the ChestX-ray8 database) as pandas DataFrames.

`chestx.nih.open(root)` reads `Data_Entry_2017*.csv`, `BBox_List_2017.csv` and the official
`train_val_list.txt` / `test_list.txt` (in `root` or `root/meta`, plain or gzipped) with the same
code and checks as `chestx train` and `chestx eval`, so the split column is the one those commands
use for the same `val_fraction` and `seed`: test from the official list, validation carved from
`train_val_list` by patient (or `val_list.txt` when the folder has one), never a patient on two sides.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Union

from . import _native

__all__ = ["NihIndex", "open"]


@dataclass(frozen=True)
class NihIndex:
    """An opened NIH release.

    `entries`: one row per film — `Image Index`, `Finding Labels`, one 0/1 column per finding
    (the 14 and `No Finding`), `Follow-up #`, `Patient ID`, `Patient Age` (nullable), `Patient
    Gender`, `View Position`, `Width`, `Height`, `Spacing X`, `Spacing Y` (mm; NaN when unknown),
    `split` ("train", "val", "test", or None when on neither list) and `path` (the PNG, or None
    when it is not on disk).
    `boxes`: the hand-drawn boxes — `Image Index`, `Finding`, `x`, `y`, `w`, `h` in the 1024-px
    coordinates of the release (`Infiltrate` read as `Infiltration`).
    """

    root: str
    entries: Any
    boxes: Any

    def split(self, name: str) -> Any:
        """The entries of one split ("train", "val" or "test")."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"split {name!r}: train, val or test")
        return self.entries[self.entries["split"] == name].reset_index(drop=True)


def open(root: Union[str, os.PathLike], *, val_fraction: float = 0.1, seed: int = 0) -> NihIndex:
    """Open the NIH release under `root`; `val_fraction` and `seed` as `chestx train`'s
    `--val-fraction` and `--seed`. Raises `chestx.ChestxError` naming the file and the problem."""
    import pandas as pd

    entries, boxes = _native.nih_open(str(root), float(val_fraction), int(seed))
    df = pd.DataFrame(entries)
    df["Patient Age"] = df["Patient Age"].astype("Int64")
    for name in _native.findings():
        df[name] = df[name].astype("uint8")
    return NihIndex(str(root), df, pd.DataFrame(boxes, columns=list(boxes)))
