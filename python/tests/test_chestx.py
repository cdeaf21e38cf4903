"""The Python package against the command line on real data: the same labels and evidence on the
OpenI reports, the published CheXNet AUCs, DICOM pixels equal to `chestx inspect --preview`, and
the box and localization scores on maps whose answers are known."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import chestx

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CHESTX_DATA", ROOT.parent / "shared" / "data"))
CHESTX = os.environ.get("CHESTX_BIN", str(ROOT / "target" / "debug" / "chestx"))


def needs(path):
    if not Path(path).exists():
        if os.environ.get("CHESTX_REQUIRE_DATA") == "1":
            pytest.fail(f"needs {path}")
        pytest.skip(f"needs {path}")
    return Path(path)


def cli(*args):
    needs(CHESTX)
    return subprocess.run([CHESTX, *map(str, args)], check=True, capture_output=True, text=True)


def test_import_loads_no_deep_learning_library():
    code = ("import sys, chestx; "
            "maps = open('/proc/self/maps').read(); "
            "print(any(m in sys.modules for m in ('torch', 'tensorflow')), 'libtorch' in maps)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.split() == ["False", "False"]


def cells_as_cli(row, binary):
    def cell(v):
        if v is None or (not isinstance(v, (int, np.integer)) and v != v):
            return ""
        return str(int(v))
    return [row["report_id"], *[cell(row[f]) for f in chestx.FINDINGS]]


@pytest.mark.parametrize("binary", [False, True])
def test_openi_labels_equal_the_cli(tmp_path, binary):
    pd = pytest.importorskip("pandas")
    reports = needs(DATA / "openi" / "reports.csv")
    out = tmp_path / "cli.csv"
    cli("label", reports, "-o", out, "--allow-skips", *(["--binary"] if binary else []))
    with out.open(newline="") as f:
        want = list(csv.reader(f))
    assert want[0] == ["report_id", *chestx.FINDINGS]
    df = pd.read_csv(reports, dtype=str, keep_default_na=False)
    got = chestx.label(df, binary=binary, errors="skip")
    assert len(got) == len(want) - 1 == 2301, "14 OpenI reports are empty"
    assert len(got.attrs["errors"]) == 14 and "empty report" in got.attrs["errors"][0]
    rows = [cells_as_cli(r, binary) for r in got.to_dict("records")]
    assert rows == want[1:]


def test_evidence_equals_the_cli(tmp_path):
    reports = needs(DATA / "openi" / "reports.csv")
    with reports.open(newline="") as f:
        table = list(csv.DictReader(f))[:300]
    small = tmp_path / "r.csv"
    with small.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    ev = tmp_path / "ev.jsonl"
    cli("label", small, "-o", tmp_path / "l.csv", "--evidence", ev, "--allow-skips")
    want = [json.loads(l) for l in ev.read_text().splitlines()]
    got = []
    for row in chestx.label(table, errors="skip", evidence=True):
        for e in row["evidence"]:
            got.append({"report_id": row["report_id"], **e})
    assert len(got) == len(want) > 300
    for g, w in zip(got, want):
        assert {k: g[k] for k in w} == w


def test_bad_reports_raise_with_the_clis_words():
    with pytest.raises(chestx.ChestxError, match="empty report"):
        chestx.label(["Heart normal.", "   "])
    rows = chestx.label(["Heart normal.", "   "], errors="skip")
    assert len(rows) == 1 and len(rows.errors) == 1
    with pytest.raises(chestx.ChestxError, match="over the limit"):
        chestx.label(["x" * 100], max_report_bytes=10)
    with pytest.raises(chestx.ChestxError, match="unknown section"):
        chestx.label(["x"], sections=["nowhere"])


def test_label_iter_streams_in_order():
    texts = ["No pneumothorax.", "Large right pleural effusion.", "Cannot exclude pneumonia."] * 3000
    streamed = list(chestx.label_iter(texts, chunk=1000))
    whole = chestx.label(texts)
    assert streamed == list(whole)
    assert [streamed[i]["Effusion"] for i in range(3)] == [None, 1, None]
    assert streamed[2]["Pneumonia"] == -1 and streamed[0]["Pneumothorax"] == 0


def test_published_chexnet_aucs_to_six_decimals():
    pd = pytest.importorskip("pandas")
    ref = needs(DATA / "nih" / "reference-preds" / "reproduce_chexnet_test_preds.csv")
    aucs = pd.read_csv(DATA / "nih" / "reference-preds" / "reproduce_chexnet_test_aucs.csv")
    preds = pd.read_csv(ref)
    entry = pd.read_csv(DATA / "nih" / "meta" / "Data_Entry_2017_v2020.csv.gz",
                        usecols=["Image Index", "Finding Labels", "Patient ID"])
    m = preds.merge(entry, on="Image Index")
    assert len(m) == len(preds)
    for label, published in zip(aucs["label"], aucs["auc"]):
        truth = m["Finding Labels"].str.split("|").apply(lambda fs: label in fs).astype(int)
        auc = chestx.roc_auc(truth, m[f"prob_{label}"])
        assert abs(auc - published) < 5e-7, (label, auc, published)
    # Patient intervals: reproducible with a seed, and wider than film intervals.
    truth = m["Finding Labels"].str.contains("Effusion").astype(int)
    a, ci = chestx.roc_auc(truth, m["prob_Effusion"], bootstrap=200, seed=3, groups=m["Patient ID"])
    assert (a, ci) == chestx.roc_auc(truth, m["prob_Effusion"], bootstrap=200, seed=3,
                                     groups=m["Patient ID"])
    _, film = chestx.roc_auc(truth, m["prob_Effusion"], bootstrap=200, seed=3)
    assert ci[0] < a < ci[1] and ci[1] - ci[0] > film[1] - film[0]


def test_dicom_pixels_equal_the_cli_preview(tmp_path):
    from PIL import Image
    files = sorted(needs(DATA / "dicom").glob("*.dcm"))
    assert files
    for f in files:
        img, meta = chestx.read_image(f)
        assert img.dtype == np.float32 and img.shape == (meta["height"], meta["width"])
        assert meta["format"] == "DICOM"
        assert "patient_id" not in meta["dicom"] and "study_uid" not in meta["dicom"]
        preview = tmp_path / (f.stem + ".png")
        cli("inspect", f, "--preview", preview)
        want = np.asarray(Image.open(preview))
        got = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
        assert np.array_equal(got, want), f
        info = chestx.read_dicom_info(f)
        assert info["rows"] == meta["height"] and "patient_id_present" in info
    with pytest.raises(chestx.ChestxError, match="notes.txt"):
        bad = tmp_path / "notes.txt"
        bad.write_text("not a film")
        chestx.read_image(bad)


def test_boxes_and_scores_on_known_maps():
    h = np.zeros((16, 16), dtype=np.float32)
    h[2:5, 3:7] = 1.0    # a strong blob: 4 wide, 3 high
    h[10:12, 10:12] = 0.5  # a weaker one
    boxes = chestx.boxes_from_heatmap(h, thresholds=(60, 180), out_size=(160, 160))
    at180 = [b["box"] for b in boxes if b["threshold"] == 180]
    assert at180 == [(30.0, 20.0, 40.0, 30.0)]
    assert len([b for b in boxes if b["threshold"] == 60]) == 2
    one = chestx.boxes_from_heatmap(h, method="regions", sigma=0.5, max_boxes=1)
    assert len(one) == 1 and one[0]["box"][0] < 7
    assert chestx.iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert chestx.iobb((0, 0, 2, 2), (0, 0, 10, 10)) == 1.0
    table = chestx.localization_table(
        [([(0, 0, 10, 10)], [(0, 0, 10, 10), (50, 50, 5, 5)]), ([(20, 20, 10, 10)], [])],
        overlap="iou")
    assert [r["threshold"] for r in table] == list(chestx.IOU_THRESHOLDS)
    assert all(r["accuracy"] == 0.5 and r["afp"] == 0.5 for r in table)
    with pytest.raises(chestx.ChestxError, match="NaN"):
        chestx.boxes_from_heatmap(np.full((4, 4), np.nan))


def test_import_leaves_numpy_and_pandas_unloaded():
    # What keeps `import chestx` fast: NumPy and pandas load on first use, not at import.
    code = "import sys, chestx; print(sorted(m for m in ('numpy', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_nih_open_reads_the_release_and_splits_by_patient():
    pd = pytest.importorskip("pandas")
    root = needs(DATA / "nih")
    entry_file = needs(root / "meta" / "Data_Entry_2017_v2020.csv.gz")
    ds = chestx.nih.open(root, val_fraction=0.1, seed=0)
    e = ds.entries
    raw = pd.read_csv(entry_file, dtype=str)
    assert len(e) == len(raw) == 112120
    assert e["Image Index"].tolist() == raw["Image Index"].tolist()
    assert e["Patient ID"].tolist() == raw["Patient ID"].astype(int).tolist()
    for f in chestx.FINDINGS:  # each 0/1 column agrees with the release's label cell
        want = raw["Finding Labels"].str.split("|").apply(lambda ls, f=f: f in ls)
        assert e[f].astype(bool).tolist() == want.tolist(), f
    counts = e["split"].value_counts(dropna=False).to_dict()
    assert counts["test"] == 25596 and counts["train"] + counts["val"] == 86524
    assert 0.08 < counts["val"] / 86524 < 0.12
    sides = e.groupby("Patient ID")["split"].nunique()
    assert (sides == 1).all(), "a patient on two sides of the split"
    # Another seed moves validation patients; the official test list never moves.
    other = chestx.nih.open(root, val_fraction=0.1, seed=1).entries
    assert (other["split"] == "test").equals(e["split"] == "test")
    assert not (other["split"] == "val").equals(e["split"] == "val")
    on_disk = e[e["path"].notna()]
    assert sorted(on_disk["Image Index"]) == sorted(p.name for p in (root / "images").glob("*.png"))
    assert all(Path(p).is_file() for p in on_disk["path"])
    b = ds.boxes
    assert len(b) == 984 and b["Image Index"].nunique() == 880
    assert "Infiltration" in set(b["Finding"]) and "Infiltrate" not in set(b["Finding"])
    assert len(ds.split("test")) == 25596


def write_csv(path, header, rows):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_chexpert_open_reads_the_convention(tmp_path):
    pytest.importorskip("pandas")
    tmp_path = tmp_path / "CheXpert-v1.0-small"  # the release's paths start with its folder name
    tmp_path.mkdir()
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", "Cardiomegaly",
              "Lung Opacity", "Pleural Effusion", "Pneumothorax"]
    train = [[f"CheXpert-v1.0-small/train/patient{p:05d}/study1/view1_frontal.jpg", "Female", "60",
              "Frontal", "AP", "", "1.0", "-1.0", "0.0" if p % 2 else "", "-1.0"]
             for p in range(1, 201)]
    train.append(["CheXpert-v1.0-small/train/patient00001/study1/view2_lateral.jpg", "Female",
                  "60", "Lateral", "", "1.0", "", "", "", ""])
    valid = [["CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg", "Male", "70",
              "Frontal", "PA", "0.0", "0.0", "1.0", "1.0", "0.0"]]
    write_csv(tmp_path / "train.csv", header, train)
    write_csv(tmp_path / "valid.csv", header, valid)
    film = tmp_path / "train" / "patient00001" / "study1" / "view1_frontal.jpg"
    film.parent.mkdir(parents=True)
    film.write_bytes(b"")
    ds = chestx.chexpert.open(tmp_path, val_fraction=0.2, seed=3)
    r = ds.rows
    assert len(r) == 202
    assert ds.findings == ["Cardiomegaly", "Effusion", "Pneumothorax"]
    assert "Lung Opacity" in ds.description
    assert r["Cardiomegaly"].tolist()[:2] == [1, 1] and r["Pneumothorax"][0] == -1
    assert r["Effusion"].isna().sum() == 100 + 1  # blank cells stay unknown, not negative
    assert r["frontal"].tolist()[200] is False
    assert r["file"].tolist()[-1] == "valid.csv" and r["split"].tolist()[-1] == "test"
    train_rows = r[r["file"] == "train.csv"]
    val_patients = set(train_rows[train_rows["split"] == "val"]["patient"])
    assert 20 <= len(val_patients) <= 60
    assert not val_patients & set(train_rows[train_rows["split"] == "train"]["patient"])
    assert r["path"][0] == str(film) and r["path"].notna().sum() == 1
    # A cell outside the convention is refused with the file, line and column named.
    train[5][6] = "2"
    write_csv(tmp_path / "train.csv", header, train)
    with pytest.raises(chestx.ChestxError, match=r"train\.csv: line 7: Cardiomegaly: \"2\""):
        chestx.chexpert.open(tmp_path)
