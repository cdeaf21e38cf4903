"""The Ray driver on a local Ray cluster: `chestx label` as 4 shards merges to the unsharded
output, and a shard killed mid-way is redone by rerunning the same command, with nothing
duplicated or lost. Run by scripts/test.sh when CHESTX_RAY_TESTS=1 (CI sets it)."""
import csv
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHESTX = os.environ.get("CHESTX_BIN", str(ROOT / "target" / "debug" / "chestx"))
DATA = Path(os.environ.get("CHESTX_DATA", ROOT.parent / "shared" / "data"))
ENGINE_VARS = ["CHESTX_SHARD", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN",
               "SLURM_ARRAY_TASK_COUNT", "JOB_COMPLETION_INDEX", "CHESTX_SHARD_COUNT",
               "RANK", "WORLD_SIZE"]


def env():
    e = {k: v for k, v in os.environ.items() if k not in ENGINE_VARS}
    e["CHESTX_BIN"] = CHESTX
    return e


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    src = DATA / "openi" / "reports.csv"
    if not src.is_file() or not Path(CHESTX).is_file():
        if os.environ.get("CHESTX_REQUIRE_DATA") == "1":
            pytest.fail(f"needs {src} and {CHESTX}")
        pytest.skip(f"needs {src} and {CHESTX}")
    rows = list(csv.reader(src.open(newline="")))
    out = tmp_path_factory.mktemp("in") / "reports.csv"
    # 2,315 real reports 40 times over, each copy with its own ids: long enough that a shard is
    # still running when it is killed.
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(rows[0])
        for copy in range(40):
            for r in rows[1:]:
                w.writerow([f"{r[0]}-{copy}", *r[1:]])
    return out


def driver(parts, reports):
    return subprocess.Popen(
        [sys.executable, str(HERE / "chestx_ray.py"), "--shards", "4",
         "--merge", str(parts / "labels.csv"), "--",
         "label", str(reports), "-o", str(parts / "labels.csv"),
         "--errors", str(parts / "errors.csv"), "--allow-skips"],
        env=env(), stderr=subprocess.PIPE, text=True)


def kill_when_running(parts, name, killed):
    """SIGKILL the process writing `name`'s temporary (`.NAME.PID.N.tmp`) once it appears."""
    pattern = re.compile(r"^\." + re.escape(name) + r"\.(\d+)\.\d+\.tmp$")
    deadline = time.time() + 120
    while time.time() < deadline and not killed:
        for p in parts.iterdir():
            m = pattern.match(p.name)
            if m:
                os.kill(int(m.group(1)), signal.SIGKILL)
                killed.append(int(m.group(1)))
                return
        time.sleep(0.002)


def test_ray_shards_merge_and_a_killed_shard_is_redone(reports, tmp_path):
    whole = tmp_path / "whole.csv"
    # 14 of the OpenI reports are empty: every copy's are refused, and counted.
    subprocess.run([CHESTX, "label", str(reports), "-o", str(whole), "--allow-skips"], env=env(),
                   check=True, stderr=subprocess.DEVNULL)
    parts = tmp_path / "parts"
    parts.mkdir()

    killed = []
    watcher = threading.Thread(target=kill_when_running,
                               args=(parts, "labels-00002-of-00004.csv", killed))
    watcher.start()
    first = driver(parts, reports)
    _, err = first.communicate(timeout=600)
    watcher.join()
    assert killed, "shard 2 was killed while it ran"
    assert first.returncode == 2, err
    assert "shard 2/4 did not finish" in err and "nothing merged" in err, err
    assert not (parts / "labels.csv").exists()
    assert not (parts / "labels-00002-of-00004.csv.manifest.json").exists()
    finished = {i: (parts / f"labels-0000{i}-of-00004.csv").stat().st_mtime_ns for i in (0, 1, 3)}

    second = driver(parts, reports)
    _, err = second.communicate(timeout=600)
    assert second.returncode == 0, err
    assert "merged 4 shards of Label: 92600 records, 92040 written, 560 failed" in err, err
    # The finished shards were not redone, and the merge is the unsharded output exactly.
    for i, mtime in finished.items():
        assert (parts / f"labels-0000{i}-of-00004.csv").stat().st_mtime_ns == mtime
    assert (parts / "labels.csv").read_bytes() == whole.read_bytes()
