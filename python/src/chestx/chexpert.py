"""A CheXpert-layout dataset (CheXpert, MIMIC-CXR-JPG, or `chestx label`'s output beside films) as a
pandas DataFrame.

`chestx.chexpert.open(root)` reads `train.csv`, `valid.csv` and an optional `test.csv` with the same
code as `chestx train` and `chestx eval`: cells in the CheXpert convention (1 positive, 0 negative,
-1 uncertain, blank unmentioned), observations mapped to the ChestX-ray14 names where they have one,
patients from a patient column or CheXpert's `patientNNNNN` folders, and the split those commands
use: without `test.csv`, `valid.csv` is the test split and validation is carved from `train.csv` by
patient; with it, the three files are train, validation and test.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, List, Union

from . import _native

__all__ = ["ChexpertIndex", "open"]


@dataclass(frozen=True)
class ChexpertIndex:
    """An opened CheXpert-layout folder.

    `rows`: every row of the label files — `Path` (as written), `patient`, `frontal` (None when
    the file does not say), one nullable Int8 column per finding the training file labels (1, 0,
    -1, <NA> for blank), `file` (which CSV), `split` ("train", "val", "test") and `path` (the
    image file, None when not found or not resolved).
    `findings`: the ChestX-ray14 findings the dataset labels. `description`: what `chestx train`
    prints about the folder (columns left out, whether patients are known).
    """

    root: str
    rows: Any
    findings: List[str] = field(default_factory=list)
    description: str = ""

    def split(self, name: str) -> Any:
        """The rows of one split ("train", "val" or "test")."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"split {name!r}: train, val or test")
        return self.rows[self.rows["split"] == name].reset_index(drop=True)


def open(root: Union[str, os.PathLike], *, val_fraction: float = 0.1, seed: int = 0,
         resolve_paths: bool = True) -> ChexpertIndex:
    """Open the CheXpert-layout folder `root`; `val_fraction` and `seed` as `chestx train`'s.
    `resolve_paths=False` skips looking for each image on disk (faster on a network share).
    Raises `chestx.ChestxError` naming the file, line and column of a bad cell."""
    import pandas as pd

    cols, description = _native.chexpert_open(str(root), float(val_fraction), int(seed),
                                              bool(resolve_paths))
    df = pd.DataFrame(cols)
    findings = [f for f in _native.findings() if f in cols]
    for name in findings:
        df[name] = df[name].astype("Int8")
    return ChexpertIndex(str(root), df, findings, description)
