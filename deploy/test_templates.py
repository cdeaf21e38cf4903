"""The Slurm and Kubernetes templates as written: shellcheck and `bash -n` on every batch script,
the Kubernetes manifests parsed and checked for what an Indexed Job needs, and the label templates'
exact commands run as every one of their shards, then their merge, on real reports: the merged
labels must equal one unsharded `chestx label`."""
import csv
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHESTX = os.environ.get("CHESTX_BIN", str(ROOT / "target" / "debug" / "chestx"))
DATA = Path(os.environ.get("CHESTX_DATA", ROOT.parent / "shared" / "data"))
ENGINE_VARS = ["CHESTX_SHARD", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN",
               "SLURM_ARRAY_TASK_COUNT", "JOB_COMPLETION_INDEX", "CHESTX_SHARD_COUNT",
               "RANK", "WORLD_SIZE"]
SBATCH = sorted((HERE / "slurm").glob("*.sbatch"))


def clean_env(**extra):
    e = {k: v for k, v in os.environ.items() if k not in ENGINE_VARS}
    e["PATH"] = f"{Path(CHESTX).parent}:{e.get('PATH', '')}"
    e.update(extra)
    return e


def needs(path):
    if not Path(path).exists():
        if os.environ.get("CHESTX_REQUIRE_DATA") == "1":
            pytest.fail(f"needs {path}")
        pytest.skip(f"needs {path}")


@pytest.mark.parametrize("script", SBATCH, ids=lambda p: p.name)
def test_batch_scripts_pass_shellcheck(script):
    subprocess.run(["bash", "-n", str(script)], check=True)
    if shutil.which("shellcheck") is None:
        if os.environ.get("CHESTX_RAY_TESTS") == "1":
            pytest.fail("shellcheck is not installed (scripts/setup-deploy.sh)")
        pytest.skip("shellcheck is not installed")
    subprocess.run(["shellcheck", "-s", "bash", str(script)], check=True)


def sample_reports(tmp):
    src = DATA / "openi" / "reports.csv"
    needs(src)
    needs(CHESTX)
    rows = list(csv.reader(src.open(newline="")))[:301]
    out = tmp / "reports.csv"
    with out.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    whole = tmp / "whole.csv"
    subprocess.run([CHESTX, "label", str(out), "-o", str(whole), "--allow-skips"],
                   env=clean_env(), check=True, stderr=subprocess.DEVNULL)
    return out, whole


def test_slurm_label_array_as_written_merges_to_one_run(tmp_path):
    reports, whole = sample_reports(tmp_path)
    script = (HERE / "slurm" / "label-array.sbatch").read_text()
    lo, hi = map(int, re.search(r"#SBATCH --array=(\d+)-(\d+)", script).groups())
    out = tmp_path / "out"
    for task in range(lo, hi + 1):
        env = clean_env(SLURM_ARRAY_TASK_ID=str(task), SLURM_ARRAY_TASK_MIN=str(lo),
                        SLURM_ARRAY_TASK_COUNT=str(hi - lo + 1), SLURM_CPUS_PER_TASK="1")
        subprocess.run(["bash", str(HERE / "slurm" / "label-array.sbatch"), str(reports), str(out)],
                       env=env, check=True, stderr=subprocess.DEVNULL)
    subprocess.run(["bash", str(HERE / "slurm" / "merge.sbatch"), str(out / "labels.csv")],
                   env=clean_env(), check=True)
    assert (out / "labels.csv").read_bytes() == whole.read_bytes()


def test_kubernetes_indexed_job_as_written_merges_to_one_run(tmp_path):
    job = yaml.safe_load((HERE / "kubernetes" / "label-indexed-job.yaml").read_text())
    merge = yaml.safe_load((HERE / "kubernetes" / "merge-job.yaml").read_text())
    for doc in (job, merge):
        assert doc["apiVersion"] == "batch/v1" and doc["kind"] == "Job"
        assert doc["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    count = spec["completions"]
    assert env["CHESTX_SHARD_COUNT"] == str(count), "the shard count is the Job's completions"
    # Run the pods' exact command with /data pointing at a scratch folder.
    reports, whole = sample_reports(tmp_path)
    data = tmp_path / "data"
    (data / "out").mkdir(parents=True)
    shutil.copy(reports, data / "reports.csv")
    sub = lambda cmd: [str(a).replace("/data", str(data)) for a in cmd]
    for index in range(count):
        subprocess.run(sub(container["command"]), check=True, stderr=subprocess.DEVNULL,
                       env=clean_env(JOB_COMPLETION_INDEX=str(index), **env))
    merge_cmd = merge["spec"]["template"]["spec"]["containers"][0]["command"]
    subprocess.run(sub(merge_cmd), check=True, env=clean_env())
    assert (data / "out" / "labels.csv").read_bytes() == whole.read_bytes()
