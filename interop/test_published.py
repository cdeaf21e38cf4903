"""Published models through chestx, checked against their own libraries.

torchxrayvision's DenseNet and ResNet classes and a CheXNet-layout torchvision DenseNet-121 are built
with random weights (nothing is downloaded or committed), their batch norms calibrated on real films
so that activations and probabilities are in a realistic range, and saved as state dicts the way a
user exports a published model. `chestx import-model` imports each; the same NIH PNGs and DICOM
files then go through the source's own preprocessing + model and through `chestx predict`, and every
output must agree within 1e-4 (torchxrayvision: its `op_norm` output where thresholds exist).
"""

import json
import os
import pathlib
import subprocess

import numpy as np
import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHESTX = os.environ.get("CHESTX_BIN", str(ROOT / "target" / "debug" / "chestx"))
DATA = pathlib.Path(os.environ.get("CHESTX_DATA", ROOT.parent / "shared" / "data"))
TOL = 1e-4

if os.environ.get("CHESTX_INTEROP_TESTS") == "1":
    import torchxrayvision as xrv  # CI installs it: a missing library is a failure there
    import torchvision
else:
    xrv = pytest.importorskip("torchxrayvision")
    torchvision = pytest.importorskip("torchvision")

# Grayscale films, one of them stored as RGBA (as a few of NIH's are), and DICOM: 10-bit
# MONOCHROME1 uncompressed CR, and 8-bit JPEG baseline.
PNGS = ["00000100_000.png", "00000211_041.png", "00000846_000.png"]
DICOM_RAW = "CR-MONO1-10-chest.dcm"
DICOM_JPEG = "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"


def films():
    pngs = [DATA / "nih" / "images" / p for p in PNGS]
    missing = [p for p in pngs + [DATA / "dicom" / DICOM_RAW, DATA / "dicom" / DICOM_JPEG] if not p.is_file()]
    if missing:
        if os.environ.get("CHESTX_REQUIRE_DATA") == "1":
            pytest.fail(f"shared data missing: {missing}")
        pytest.skip(f"shared data missing (set CHESTX_DATA): {missing[0]}")
    return pngs


def chestx(*args):
    out = subprocess.run([CHESTX, *map(str, args)], capture_output=True, text=True)
    assert out.returncode == 0, f"chestx {args[0]} failed ({out.returncode}): {out.stderr}"
    return out


def calibrate(model, batch, seed):
    """Batch-norm statistics from real films (cumulative averages in training mode), affine
    parameters drawn at random, classifier scaled so logits sit near 0 — a random network that
    behaves like a trained one numerically: no saturated probabilities to hide a mismatch."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
        model.train()
        model(batch)
        model.eval()


def xrv_input(path, size):
    """torchxrayvision's own chain: load_image (DICOM by read_xray_dcm), centre crop, resize."""
    if path.suffix == ".dcm":
        img = xrv.utils.read_xray_dcm(str(path))[None, ...]
    else:
        img = xrv.utils.load_image(str(path))
    img = xrv.datasets.XRayCenterCrop()(img)
    img = xrv.datasets.XRayResizer(size)(img)
    return torch.from_numpy(img)[None, ...]


def predict(model_dir, inputs, out):
    chestx("predict", *inputs, "--run", model_dir, "-o", out, "--device", "cpu")
    return {
        p.stem: json.loads((out / f"{p.stem}.json").read_text())["findings"] for p in inputs
    }


def compare(expected, got, key):
    """The largest difference over every output of every film (each film's printed)."""
    worst = 0.0
    for name, row in expected.items():
        values = np.array([f[key] for f in got[name]], dtype=np.float64)
        d = float(np.abs(values - row).max())
        print(f"  {name} {key}: max |Δ| {d:.2e}")
        worst = max(worst, d)
    return worst


def spread(rows):
    """Share of outputs away from 0 and 1: a test on saturated outputs would prove nothing."""
    v = np.concatenate(list(rows.values()))
    return float(((v > 0.02) & (v < 0.98)).mean())


@pytest.fixture(scope="module")
def pngs():
    return films()


@pytest.fixture(scope="module")
def dicoms(tmp_path_factory):
    """The 10-bit MONOCHROME1 CR as a Part-10 file: the shared file is ACR-NEMA (no preamble, no
    file meta), which pydicom — and so torchxrayvision — cannot decode; chestx reads both. The
    pixels and their attributes are untouched. Also the 8-bit JPEG-baseline file as it is."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ImplicitVRLittleEndian, generate_uid

    ds = pydicom.dcmread(DATA / "dicom" / DICOM_RAW, force=True)
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ImplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = getattr(ds, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.1")
    meta.MediaStorageSOPInstanceUID = getattr(ds, "SOPInstanceUID", generate_uid())
    ds.file_meta = meta
    out = tmp_path_factory.mktemp("dicom") / "cr-mono1-10.dcm"
    ds.save_as(out, enforce_file_format=True)
    return [out, DATA / "dicom" / DICOM_JPEG]


def test_xrv_densenet_matches_torchxrayvision(tmp_path, pngs, dicoms):
    inputs = pngs + dicoms
    torch.manual_seed(0)
    thresholds = torch.rand(18) * 0.6 + 0.2
    thresholds[16] = float("nan")  # an output without an operating point: untrained, 0.5 in op_norm
    model = xrv.models.DenseNet(weights=None, op_threshs=thresholds)
    batch = torch.cat([xrv_input(p, 224) for p in inputs])
    model.op_threshs = None
    calibrate(model, batch, seed=1)
    with torch.no_grad():
        probs = torch.sigmoid(model(batch)).numpy()
        model.op_threshs = thresholds
        normed = model(batch).numpy()
    weights = tmp_path / "xrv-densenet.pth"
    torch.save(model.state_dict(), weights)
    chestx("import-model", weights, "--from", "torchxrayvision", "-o", tmp_path / "model")
    got = predict(tmp_path / "model", inputs, tmp_path / "out")
    stems = [p.stem for p in inputs]
    assert spread(dict(zip(stems, probs))) > 0.5
    # The JPEG-baseline DICOM apart: pydicom decodes it through Pillow's libjpeg, chestx through
    # its own decoder, and 2% of pixels differ by one grey level (IDCT rounding, both within the
    # JPEG standard's accuracy), which moves outputs by ~3e-4. Every other film must agree to 1e-4.
    exact = {k: v for k, v in zip(stems, probs) if k != dicoms[1].stem}
    d_prob = compare(exact, got, "probability")
    d_norm = compare({k: v for k, v in zip(stems, normed) if k in exact}, got, "calibrated")
    d_jpeg = compare({dicoms[1].stem: probs[-1]}, got, "probability")
    print(f"xrv DenseNet-121: max |Δ| probability {d_prob:.2e}, op_norm {d_norm:.2e}; JPEG DICOM {d_jpeg:.2e}")
    assert d_prob < TOL and d_norm < TOL
    assert d_jpeg < 1e-3
    lesion = [f for f in got[stems[0]] if f["finding"] == "Lung Opacity"][0]
    assert not lesion["trained"] and not lesion["positive"] and lesion["calibrated"] == 0.5


def test_xrv_resnet_matches_torchxrayvision(tmp_path, pngs, dicoms):
    """The ResNet class loads only a named weight set: its file is put where torchxrayvision looks,
    so the class itself (and its published operating points) is what chestx is compared with."""
    inputs = pngs[:2] + dicoms[:1]
    torch.manual_seed(2)
    net = torchvision.models.resnet50(num_classes=18, weights=None)
    net.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    batch = torch.cat([xrv_input(p, 512) for p in inputs])
    calibrate(net, batch, seed=3)
    name = "resnet50-res512-all"
    cache = tmp_path / "cache"
    cache.mkdir()
    torch.save(net.state_dict(), cache / os.path.basename(xrv.models.model_urls[name]["weights_url"]))
    model = xrv.models.ResNet(weights=name, cache_dir=str(cache))
    with torch.no_grad():
        normed = model(batch).numpy()
        probs = torch.sigmoid(model.model(batch)).numpy()
    weights = tmp_path / "xrv-resnet.pth"
    torch.save(model.state_dict(), weights)
    chestx("import-model", weights, "--from", "torchxrayvision", "--weights", name, "-o", tmp_path / "model")
    got = predict(tmp_path / "model", inputs, tmp_path / "out")
    stems = [p.stem for p in inputs]
    assert spread(dict(zip(stems, probs))) > 0.5
    d_prob = compare(dict(zip(stems, probs)), got, "probability")
    d_norm = compare(dict(zip(stems, normed)), got, "calibrated")
    print(f"xrv ResNet-50 (512): max |Δ| probability {d_prob:.2e}, op_norm {d_norm:.2e}")
    assert d_prob < TOL and d_norm < TOL


def chexnet_input(path):
    """CheXNet's chain in torchvision transforms on tensors: RGB, short side to 256 (bilinear,
    antialiased), centre 224, ImageNet mean and std."""
    from PIL import Image
    import torchvision.transforms.functional as TF

    t = TF.to_tensor(Image.open(path).convert("RGB"))
    t = TF.resize(t, 256, antialias=True)
    t = TF.center_crop(t, 224)
    return TF.normalize(t, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])[None]


def chexnet_pil_input(path):
    """The same chain as the original CheXNet code ran it: torchvision transforms on a PIL image."""
    from PIL import Image
    import torchvision.transforms as T

    chain = T.Compose([
        T.Resize(256), T.CenterCrop(224), T.ToTensor(),
        T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    return chain(Image.open(path).convert("RGB"))[None]


def test_chexnet_densenet_matches_torchvision(tmp_path, pngs):
    torch.manual_seed(4)
    net = torchvision.models.densenet121(weights=None)
    net.classifier = torch.nn.Sequential(torch.nn.Linear(1024, 14), torch.nn.Sigmoid())
    batch = torch.cat([chexnet_input(p) for p in pngs])
    calibrate(net, batch, seed=5)
    with torch.no_grad():
        probs = net(batch).numpy()
    # Saved as CheXNet's checkpoints are: DataParallel's `module.`, the `densenet121.` attribute,
    # pre-0.4 torchvision names (`norm.1`), nested under `state_dict`.
    state = {}
    for k, v in net.state_dict().items():
        for new, old in [(".norm1.", ".norm.1."), (".norm2.", ".norm.2."), (".conv1.", ".conv.1."), (".conv2.", ".conv.2.")]:
            k = k.replace(new, old)
        state[f"module.densenet121.{k}"] = v
    weights = tmp_path / "chexnet.pth.tar"
    torch.save({"epoch": 1, "state_dict": state}, weights)
    chestx("import-model", weights, "--from", "chexnet", "-o", tmp_path / "model")
    got = predict(tmp_path / "model", pngs, tmp_path / "out")
    stems = [p.stem for p in pngs]
    assert spread(dict(zip(stems, probs))) > 0.5
    d_prob = compare(dict(zip(stems, probs)), got, "probability")
    print(f"CheXNet DenseNet-121: max |Δ| probability {d_prob:.2e}")
    assert d_prob < TOL
    # For the record, not the bar: the original CheXNet code resized 8-bit PIL images.
    with torch.no_grad():
        pil = net(torch.cat([chexnet_pil_input(p) for p in pngs])).numpy()
    print(f"  CheXNet, PIL (8-bit) resize instead: max |Δ| {compare(dict(zip(stems, pil)), got, 'probability'):.2e}")
