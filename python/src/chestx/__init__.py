"""chestx for Python: ChestX-ray8's report labeler, DICOM/PNG/JPEG reading, heatmap boxes and the
paper's localization and AUC scores, computed by the same Rust code as the `chestx` command line.

Importing this package loads no deep-learning library (no libtorch, no PyTorch).

    >>> import chestx
    >>> chestx.label(["No pneumothorax. Small left effusion."])[0]["Effusion"]
    1
"""
from __future__ import annotations

import json
from itertools import islice
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

if TYPE_CHECKING:  # NumPy loads on first use: `import chestx` stays fast
    import numpy as np

from . import _native, chexpert, nih
from ._native import ChestxError

__all__ = [
    "ChestxError", "FINDINGS", "label", "label_iter", "read_image", "read_dicom_info",
    "boxes_from_heatmap", "iou", "iobb", "localization_table", "roc_auc",
    "IOU_THRESHOLDS", "IOBB_THRESHOLDS", "PAPER_HEAT_THRESHOLDS", "nih", "chexpert",
]
__version__ = "0.1.0"

#: The 14 ChestX-ray14 findings and No Finding, in the order of every label row.
FINDINGS: List[str] = list(_native.findings())
#: The paper's heatmap thresholds (0-255) and its localization thresholds.
PAPER_HEAT_THRESHOLDS = (60, 180)
IOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
IOBB_THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)

_CHUNK = 4096


def _is_frame(x: Any) -> bool:
    return type(x).__name__ == "DataFrame" and hasattr(x, "columns")


def _text_columns(columns: List[str], id_column: str, text_columns: Optional[Sequence[str]]):
    """As `chestx label` picks them: asked for, else findings + impression, else all others."""
    lower = {c.strip().lower(): c for c in columns}
    if text_columns is not None:
        missing = [c for c in text_columns if c.strip().lower() not in lower]
        if missing:
            raise ChestxError(f"no text column {missing[0]!r} in header {columns!r}")
        return [lower[c.strip().lower()] for c in text_columns]
    named = [lower[c] for c in ("findings", "impression") if c in lower]
    return named or [c for c in columns if c != id_column]


def _text(v) -> str:
    """A cell as text: missing values (None, NaN, pandas' NA) are empty."""
    if isinstance(v, str):
        return v
    if v is None:
        return ""
    try:
        if v != v:
            return ""
    except TypeError:  # pandas.NA has no truth value
        return ""
    return str(v)


def _frame_text(column) -> List[str]:
    """A DataFrame column as texts: missing cells empty, other values as written by `str`."""
    values = column.tolist()
    if all(type(v) is str for v in values):
        return values
    return [_text(v) for v in values]


def _columns(reports, ids, id_column, text_columns):
    """(ids, column names, texts per column) from a DataFrame, a list of texts, or a list of dicts."""
    if isinstance(reports, str):
        reports = [reports]
    if _is_frame(reports):
        cols = [str(c) for c in reports.columns]
        idc = id_column if id_column is not None else cols[0]
        if idc not in cols:
            raise ChestxError(f"no id column {idc!r} in header {cols!r}")
        tcols = _text_columns(cols, idc, text_columns)
        return _frame_text(reports[idc]), tcols, [_frame_text(reports[c]) for c in tcols]
    reports = list(reports)
    if reports and isinstance(reports[0], dict):
        cols = list(reports[0].keys())
        idc = id_column if id_column is not None else cols[0]
        tcols = _text_columns(cols, idc, text_columns)
        return ([_text(r.get(idc)) for r in reports], tcols,
                [[_text(r.get(c)) for r in reports] for c in tcols])
    out_ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(reports))]
    if len(out_ids) != len(reports):
        raise ChestxError(f"{len(out_ids)} ids for {len(reports)} reports")
    return out_ids, ["text"], [[t if isinstance(t, str) else "" for t in reports]]


def label(reports, ids: Optional[Sequence[Any]] = None, *, binary: bool = False,
          uncertain: str = "negative", sections: Optional[Sequence[str]] = None,
          rules: Optional[str] = None, evidence: bool = False, id_column: Optional[str] = None,
          text_columns: Optional[Sequence[str]] = None, errors: str = "raise",
          max_report_bytes: int = 1 << 20, as_frame: Optional[bool] = None):
    """Label reports with the 14 findings and No Finding, in the CheXpert convention.

    `reports`: one text, a list of texts (`ids` names them; default 0, 1, ...), a list of dicts,
    or a pandas DataFrame (id column first or `id_column`; text from findings + impression when
    present, else every other column, exactly as `chestx label` reads a CSV — read it with
    `dtype=str, keep_default_na=False` to keep ids as written).

    Cells are 1 (positive), 0 (negated), -1 (uncertain) and None (not mentioned); `binary=True`
    gives 0/1 with uncertain mapped by `uncertain` ("negative" or "positive"), and a "No Finding"
    of None becomes 0. `evidence=True` adds an "evidence" list per report (finding, status,
    sentence, character span, phrase, cue rule). A report that cannot be labelled (empty,
    over `max_report_bytes`) raises ChestxError, or with `errors="skip"` is left out and listed
    in the result's `.errors` (a list attribute on the DataFrame's `attrs` or returned list).

    Returns a pandas DataFrame (`report_id` then the 15 findings) when `reports` is a DataFrame
    or `as_frame=True`, else a list of dicts. Runs on every core with the GIL released.
    """
    if uncertain not in ("negative", "positive"):
        raise ChestxError(f"uncertain={uncertain!r}: negative or positive")
    if errors not in ("raise", "skip"):
        raise ChestxError(f"errors={errors!r}: raise or skip")
    frame = _is_frame(reports) if as_frame is None else as_frame
    lab = _native.NativeLabeler(rules, list(sections) if sections else None, max_report_bytes)
    rid, cols, texts = _columns(reports, ids, id_column, text_columns)
    kept, values, blank, errs, ev = lab.label_columns(rid, cols, texts, binary,
                                                      uncertain == "positive", evidence)
    if errs and errors == "raise":
        raise ChestxError(f"{len(errs)} reports could not be labelled; the first: {errs[0]}")
    import numpy as np

    shape = (len(FINDINGS), len(kept))
    values = np.frombuffer(values, dtype=np.int8).reshape(shape)
    blank = np.frombuffer(blank, dtype=np.bool_).reshape(shape)
    spans = [[dict(zip(_EVIDENCE, e)) for e in report] for report in ev] if evidence else None
    if frame:
        import pandas as pd

        data: Dict[str, Any] = {"report_id": kept}
        for j, f in enumerate(FINDINGS):
            data[f] = pd.arrays.IntegerArray(values[j].copy(), blank[j].copy())
        if evidence:
            data["evidence"] = spans
        df = pd.DataFrame(data)
        df.attrs["errors"] = errs
        return df
    cells = np.where(blank, None, values.astype(object)).T.tolist()
    out = []
    for k, (i, row) in enumerate(zip(kept, cells)):
        d = {"report_id": i, **dict(zip(FINDINGS, row))}
        if evidence:
            d["evidence"] = spans[k]
        out.append(d)
    return _Result(out, errs)


_EVIDENCE = ("source", "section", "finding", "status", "sentence", "start", "end", "phrase", "rule")


class _Result(list):
    """A list of label dicts with the reports that could not be labelled in `.errors`."""

    def __init__(self, rows, errors):
        super().__init__(rows)
        self.errors = errors


def label_iter(reports: Iterable[Any], *, chunk: int = _CHUNK, errors: str = "raise",
               **options) -> Iterator[Dict[str, Any]]:
    """`label` over an iterable of any length, `chunk` reports at a time: rows are yielded in
    input order and memory stays flat. Items are texts, `(id, text)` pairs or dicts."""
    it = iter(reports)
    n = 0
    while True:
        block = list(islice(it, chunk))
        if not block:
            return
        if isinstance(block[0], tuple):
            ids, texts = [b[0] for b in block], [b[1] for b in block]
        elif isinstance(block[0], dict):
            ids, texts = None, block
        else:
            ids, texts = [str(n + k) for k in range(len(block))], block
        yield from label(texts, ids, errors=errors, as_frame=False, **options)
        n += len(block)


def read_image(path) -> Tuple["np.ndarray", Dict[str, Any]]:
    """A PNG, JPEG or DICOM film as `chestx` sees it: a float32 array (height × width) in [0, 1],
    DICOM through its modality LUT and VOI window, MONOCHROME1 inverted; and a metadata dict
    (format, size, DICOM attributes) with patient and study identifiers withheld."""
    import numpy as np

    raw, w, h, meta = _native.read_image(str(path))
    return np.frombuffer(raw, dtype="<f4").reshape(h, w).copy(), json.loads(meta)


def read_dicom_info(path) -> Dict[str, Any]:
    """A DICOM file's header fields (no pixels), identifiers withheld."""
    return json.loads(_native.read_dicom_info(str(path)))


Box = Tuple[float, float, float, float]


def _map(heatmap):
    import numpy as np

    h = np.ascontiguousarray(heatmap, dtype="<f4")
    if h.ndim != 2:
        raise ChestxError(f"a heatmap is 2-D (height × width), not {h.ndim}-D")
    return h.tobytes(), h.shape[1], h.shape[0]


def boxes_from_heatmap(heatmap, thresholds: Sequence[int] = PAPER_HEAT_THRESHOLDS,
                       out_size: Optional[Tuple[int, int]] = None, *, method: str = "paper",
                       sigma: float = 1.0, level: float = 0.5, keep: float = 0.5,
                       max_boxes: int = 1, round: bool = False) -> List[Dict[str, Any]]:
    """Boxes `(x, y, w, h)` from a class activation map (any scale), in an image of
    `out_size = (width, height)` (default: the map's own).

    `method="paper"` is ChestX-ray8's: the map min-max scaled to [0, 255], a box around each
    8-connected component at each of `thresholds`; each box comes with its threshold, peak and
    size in cells. `method="regions"` is `chestx eval`'s default: the map smoothed by `sigma`
    cells, cut at `level` of its peak, components whose peak reaches `keep` of the map's, at most
    `max_boxes` (squares around the centroid with `round=True`)."""
    data, w, h = _map(heatmap)
    ow, oh = out_size if out_size is not None else (w, h)
    if method == "paper":
        return [{"box": b, "threshold": t, "peak": p, "cells": c}
                for t, b, p, c in _native.paper_boxes(data, w, h, list(thresholds), ow, oh)]
    if method == "regions":
        return [{"box": b} for b in _native.peak_region_boxes(
            data, w, h, sigma, level, keep, max_boxes, round, ow, oh)]
    raise ChestxError(f"method={method!r}: paper or regions")


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two `(x, y, w, h)` boxes."""
    return _native.iou(tuple(a), tuple(b))


def iobb(detected: Box, truth: Box) -> float:
    """Intersection over the detected box's area (ChestX-ray8's IoBB)."""
    return _native.iobb(tuple(detected), tuple(truth))


def localization_table(cases: Iterable[Tuple[Sequence[Box], Sequence[Box]]], overlap: str = "iou",
                       thresholds: Optional[Sequence[float]] = None) -> List[Dict[str, Any]]:
    """The paper's localization table for one class: `cases` holds `(true boxes, detected boxes)`
    per image; per threshold (default the paper's for `overlap`, "iou" or "iobb"), the accuracy
    (true boxes hit by a detection with overlap >= T) and AFP (detections hitting none, per image)."""
    if thresholds is None:
        thresholds = IOU_THRESHOLDS if overlap.lower() == "iou" else IOBB_THRESHOLDS
    cases = [([tuple(b) for b in t], [tuple(b) for b in d]) for t, d in cases]
    rows = _native.localization_table(cases, overlap, list(thresholds))
    return [dict(zip(("threshold", "accuracy", "afp", "truth_boxes", "images"), r)) for r in rows]


def roc_auc(y_true, y_score, *, bootstrap: int = 0, level: float = 0.95, seed: int = 0,
            groups=None):
    """Rank ROC AUC (ties averaged); labels 1/0, with NaN or None for unknown (left out).

    With `bootstrap=N`, returns `(auc, (low, high))`: a percentile interval over N resamples
    of `groups` (e.g. patient ids, each resampled whole) or of films, seeded. None where the
    labels have no positive or no negative."""
    import numpy as np

    t = [None if (v is None or (isinstance(v, float) and np.isnan(v))) else bool(v)
         for v in np.asarray(y_true, dtype=object).tolist()]
    s = np.asarray(y_score, dtype=np.float64).tolist()
    clusters = None
    if groups is not None:
        index: Dict[Any, int] = {}
        clusters = [index.setdefault(g, len(index)) for g in list(groups)]
    auc, ci = _native.roc_auc(s, t, bootstrap, level, seed, clusters)
    return (auc, ci) if bootstrap else auc
