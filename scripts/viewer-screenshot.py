"""The README's screenshot of the viewer: a film and a report, at 1280x800, in headless Chromium.

Usage (with `chestx serve` running): python3 scripts/viewer-screenshot.py URL FILM OUT.png
Needs scripts/setup-browser.sh. The README's picture: the demo's run, a procedural phantom
(`chestx synth --n 12 --size 512 --procedural 4 --seed 5`, image 00000002_000.png: Effusion and Nodule).
"""

import os
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

REPORT = ("FINDINGS: Small left pleural effusion. A 1 cm nodule in the left mid lung. "
          "No pneumothorax. Cannot exclude early pneumonia at the right base.\n"
          "IMPRESSION: Left effusion and pulmonary nodule; follow-up CT recommended.")

url, film, out = sys.argv[1:4]
opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,800",
             "--force-device-scale-factor=1", f"--user-data-dir={tempfile.mkdtemp()}"):
    opts.add_argument(flag)
d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
try:
    d.get(url)
    WebDriverWait(d, 30).until(lambda d: "findings" in d.find_element(By.ID, "model-line").text)
    d.find_element(By.ID, "file").send_keys(os.path.abspath(film))
    WebDriverWait(d, 60).until(lambda d: d.execute_script("return document.body.dataset.ready"))
    d.find_element(By.ID, "report").send_keys(REPORT)
    d.find_element(By.ID, "label-button").click()
    WebDriverWait(d, 30).until(lambda d: d.execute_script("return document.body.dataset.labelled"))
    d.execute_script("window.scrollTo(0, 0)")
    d.save_screenshot(out)
finally:
    d.quit()
print(out)
