"""Reference side of `chestx-bench audit`: the same subgroup AUCs with scikit-learn's roc_auc_score.

Per finding and per subgroup of each partition (sex, view, age bands), the AUC of the subgroup and of
everyone else, as `chestx auc --by` reports them. Prints timings and the AUCs as JSON on its last line.
"""
import argparse
import json
import time

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

AGE_BANDS = [(0, 20), (20, 40), (40, 60), (60, 80), (80, None)]


def band_label(lo, hi):
    return f"{lo}+" if hi is None else f"{lo}–{hi - 1}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pred", required=True)
    ap.add_argument("--labels", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()

    t0 = time.perf_counter()
    pred = pd.read_csv(a.pred)
    meta = pd.read_csv(a.labels, usecols=range(7), index_col=False)
    df = pred.merge(meta, on="Image Index", how="left")
    findings = [c[len("prob_"):] for c in pred.columns if c.startswith("prob_")]
    labels = {f: df["Finding Labels"].str.split("|").apply(lambda ls: f.replace("_", " ") in ls or f in ls).to_numpy() for f in findings}
    age = df["Patient Age"].to_numpy()
    age_group = np.full(len(df), "unknown", dtype=object)
    for lo, hi in AGE_BANDS:
        m = (age >= lo) & ((age < hi) if hi is not None else True)
        age_group[m] = band_label(lo, hi)
    partitions = {
        "sex": df["Patient Gender"].to_numpy(),
        "view": df["View Position"].to_numpy(),
        "age": age_group,
    }
    load_s = time.perf_counter() - t0

    times = []
    for _ in range(a.rounds):
        t = time.perf_counter()
        out = {}
        for f in findings:
            y = labels[f]
            s = df["prob_" + f].to_numpy()
            for name, groups in partitions.items():
                for g in sorted(set(groups)):
                    m = groups == g
                    own = roc_auc_score(y[m], s[m]) if 0 < y[m].sum() < m.sum() else None
                    rest = roc_auc_score(y[~m], s[~m]) if 0 < y[~m].sum() < (~m).sum() else None
                    out[f"{f}|{name}|{g}"] = [own, rest]
        times.append(time.perf_counter() - t)
    print(json.dumps({"load_s": load_s, "compute_s": sorted(times)[len(times) // 2], "aucs": out}))


if __name__ == "__main__":
    main()
