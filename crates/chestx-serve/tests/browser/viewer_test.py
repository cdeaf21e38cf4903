"""The viewer in a real headless Chromium, judged by its pixels.

Usage: viewer_test.py URL FILM.png FILM.dcm OUT_DIR

The server must show an evaluation (`--eval`). Uploads a PNG and a DICOM through the page's file picker, and checks in screenshots that the film,
the heatmap overlay and the boxes are drawn (and that the overlay follows the opacity control);
pastes a report, labels it and checks the evidence highlights' colours. Screenshots are saved in
OUT_DIR. Exits non-zero with a message on the first failure.
"""

import io
import json
import os
import urllib.request
import sys
import tempfile

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BOX = (0, 230, 118)  # --box in viewer.css / drawBoxes
HIGHLIGHTS = {"positive": (255, 138, 101), "negative": (129, 199, 132), "uncertain": (255, 213, 79)}


def driver():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1280,800", "--force-device-scale-factor=1",
        f"--user-data-dir={tempfile.mkdtemp(prefix='chestx-chromium-')}",
    ):
        opts.add_argument(flag)
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=opts)


def shot(el, path):
    png = el.screenshot_as_png
    with open(path, "wb") as f:
        f.write(png)
    return Image.open(io.BytesIO(png)).convert("RGB")


def count(img, pred):
    return sum(1 for p in img.getdata() if pred(p))


def near(c, tol=40):
    return lambda p: all(abs(a - b) <= tol for a, b in zip(p, c))


def coloured(p):
    return max(p) - min(p) > 60


def check(cond, msg):
    if not cond:
        raise SystemExit("FAIL: " + msg)
    print("ok:", msg)


def upload(d, path, out, name):
    d.execute_script("document.body.dataset.ready = ''")
    d.find_element(By.ID, "file").send_keys(os.path.abspath(path))
    WebDriverWait(d, 60).until(lambda d: d.execute_script("return document.body.dataset.ready"))
    state = d.execute_script("return document.body.dataset.ready")
    check(state == "film", f"{name}: the page shows the prediction ({d.find_element(By.ID, 'film-status').text})")
    stage = d.find_element(By.ID, "stage")
    # Heatmap off: the film is grey, so every coloured pixel is a box.
    d.execute_script("const o = document.getElementById('opacity'); o.value = 0; o.dispatchEvent(new Event('input'))")
    plain = shot(stage, os.path.join(out, f"{name}-boxes.png"))
    n = plain.width * plain.height
    boxes = count(plain, near(BOX))
    check(boxes > 200, f"{name}: box outlines drawn ({boxes} box-green pixels)")
    grey = count(plain, lambda p: not coloured(p))
    check(grey > 0.5 * n, f"{name}: the film is drawn ({grey / n:.0%} grey pixels)")
    # Heatmap at full opacity: much more of the film is coloured.
    d.execute_script("const o = document.getElementById('opacity'); o.value = 100; o.dispatchEvent(new Event('input'))")
    heat = shot(stage, os.path.join(out, f"{name}-heatmap.png"))
    before, after = count(plain, coloured), count(heat, coloured)
    check(after > before + 0.05 * n, f"{name}: heatmap overlay drawn ({before / n:.1%} -> {after / n:.1%} coloured)")
    # Windowing changes the film's pixels.
    d.execute_script("const o = document.getElementById('opacity'); o.value = 0; o.dispatchEvent(new Event('input'))")
    d.execute_script("const l = document.getElementById('level'); l.value = 40; l.dispatchEvent(new Event('input'))")
    bright = shot(stage, os.path.join(out, f"{name}-window.png"))
    mean = lambda img: sum(sum(p) for p in img.getdata()) / (3 * n)
    check(mean(bright) > mean(plain) + 20, f"{name}: windowing brightens the film ({mean(plain):.0f} -> {mean(bright):.0f})")
    d.find_element(By.ID, "reset").click()
    d.execute_script("const o = document.getElementById('opacity'); o.value = 50; o.dispatchEvent(new Event('input'))")
    d.save_screenshot(os.path.join(out, f"{name}-page.png"))


def evaluation(d, url, out):
    """The evaluation panel: the table, the ROC plot and the gallery, filtered by outcome."""
    e = json.load(urllib.request.urlopen(url.rstrip("/") + "/v1/eval"))
    WebDriverWait(d, 30).until(lambda d: d.execute_script("return document.body.dataset.evaluation"))
    rows = d.find_elements(By.CSS_SELECTOR, "#eval-table tbody tr")
    check(len(rows) == len(e["classes"]), f"evaluation table: one row per finding ({len(rows)})")
    figures = lambda: d.find_elements(By.CSS_SELECTOR, "#gallery figure")
    check(len(figures()) == len(e["cases"]), f"gallery shows every overlay ({len(e['cases'])})")
    loaded = "return [...document.querySelectorAll('#gallery img, #roc')].every(i => i.complete && i.naturalWidth > 0)"
    WebDriverWait(d, 30).until(lambda d: d.execute_script(loaded))
    check(True, "the ROC plot and every overlay loaded")
    gallery = d.find_element(By.ID, "eval-panel")
    d.execute_script("arguments[0].scrollIntoView()", gallery)
    shot(gallery, os.path.join(out, "evaluation.png"))
    # The gallery itself, scrolled into view: the panel's text above it grows with the method's
    # description and may push the overlays below the window.
    thumbs = d.find_element(By.ID, "gallery")
    d.execute_script("arguments[0].scrollIntoView()", thumbs)
    img = shot(thumbs, os.path.join(out, "gallery.png"))
    boxed = [c for c in e["cases"] if c["truth"]]
    green = count(img, near((0, 220, 0), 30))
    check(not boxed or green > 50, f"true boxes visible in the gallery ({green} green pixels, {len(boxed)} boxed overlays)")
    sub = e.get("subgroups")
    check(sub is not None, "the evaluation carries its subgroup audit (eval --by)")
    largest = sub["largest"] or []
    gap_rows = d.find_elements(By.CSS_SELECTOR, "#gaps-table tbody tr")
    check(len(gap_rows) == len(largest), f"largest subgroup gaps: {len(largest)} rows")
    check(d.find_element(By.ID, "gaps").is_displayed(), "the subgroup section is shown")
    shown = d.find_element(By.ID, "gaps-table" if largest else "gaps-none")
    check(shown.is_displayed(), "gaps table, or the line saying there are none, is visible")
    for outcome in ("hit", "miss", "false_box", "clear"):
        d.execute_script(f"const s = document.getElementById('gallery-outcome'); s.value = '{outcome}'; s.dispatchEvent(new Event('change'))")
        want = sum(1 for c in e["cases"] if c["outcome"] == outcome)
        check(len(figures()) == want, f"filter '{outcome}': {want} overlays")


def main():
    url, png, dcm, out = sys.argv[1:5]
    os.makedirs(out, exist_ok=True)
    d = driver()
    try:
        d.get(url)
        WebDriverWait(d, 30).until(lambda d: "findings" in d.find_element(By.ID, "model-line").text)
        check(True, "the page loads and describes the model: " + d.find_element(By.ID, "model-line").text)
        upload(d, png, out, "png")
        rows = d.find_elements(By.CSS_SELECTOR, "#findings tbody tr")
        check(len(rows) == 3, f"one table row per finding ({len(rows)})")
        upload(d, dcm, out, "dicom")
        check("DICOM" in d.find_element(By.ID, "film-status").text, "the DICOM is named as such")

        report = "FINDINGS: No pneumothorax. Cannot exclude pneumonia. IMPRESSION: Small left effusion."
        area = d.find_element(By.ID, "report")
        area.clear()
        area.send_keys(report)
        d.find_element(By.ID, "label-button").click()
        WebDriverWait(d, 30).until(lambda d: d.execute_script("return document.body.dataset.labelled"))
        marks = [(m.text.lower(), m.get_attribute("class")) for m in d.find_elements(By.CSS_SELECTOR, "#highlighted mark")]
        for word, status in (("pneumothorax", "negative"), ("pneumonia", "uncertain"), ("effusion", "positive")):
            check(any(word in t and c == status for t, c in marks), f"{word} marked {status} ({marks})")
        hl = shot(d.find_element(By.ID, "highlighted"), os.path.join(out, "report-highlights.png"))
        for status, rgb in HIGHLIGHTS.items():
            k = count(hl, near(rgb, 12))
            check(k > 30, f"{status} highlight painted ({k} pixels of {rgb})")
        d.save_screenshot(os.path.join(out, "viewer.png"))
        evaluation(d, url, out)
    finally:
        d.quit()
    print("PASS")


if __name__ == "__main__":
    main()
