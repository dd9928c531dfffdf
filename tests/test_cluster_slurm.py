"""`autoseg submit --scheduler slurm` against a real single-node SLURM cluster (munge, slurmctld, slurmd from Debian's
packages), started by tests/slurm/start_slurm.sh. Skipped with its message where it cannot install or run them."""
import json
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from autoseg.cli import main
from autoseg.cluster.jobs import Job, JobSet
from autoseg.cluster.submit import _launch
from autoseg.core.errors import AutosegError

pytestmark = pytest.mark.slow
START = Path(__file__).parent / "slurm" / "start_slurm.sh"
TRAIN = "--train-args=--epochs 1 --iters-per-epoch 2 --val-iters 1 --batch-size 2 --num-workers 0"


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("SLURM test: needs Linux")
    r = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=900)
    if r.returncode == 3:  # no root, no apt-get, or the packages could not be installed
        pytest.skip(f"SLURM test skipped: {r.stdout.strip() or r.stderr.strip()}")
    assert r.returncode == 0, f"SLURM was installed but did not start:\n{r.stdout}\n{r.stderr}"


def _times(log: Path) -> tuple[datetime, datetime]:
    """(start, end) of a job from the lines its script writes."""
    text = log.read_text()
    start = re.search(r"started (\S+) on", text).group(1)
    end = re.search(r"exit status \d+ (\S+)", text).group(1)
    return datetime.fromisoformat(start.rstrip("Z")), datetime.fromisoformat(end.rstrip("Z"))


def test_phantom_study_on_slurm_folds_then_crossval_then_predict_parts(slurm_cluster, tiny_phantom, tmp_path):
    """One study on the real SLURM: preprocessing, then the folds, then the default dependent step (`autoseg
    crossval RUN -c CONFIG`), each started only after what it depends on ended; then prediction parts fanned out.
    The run is cut to 2 folds (splits.json) and a small network, so the study costs the suite ~20 s; a custom
    --after-folds command is run by the local scheduler's study (tests/test_cluster.py)."""
    from autoseg.cli import _parser
    from autoseg.cluster.graph import cli_commands

    assert "crossval" in cli_commands(_parser())  # once a skip, from before the command existed
    run = tmp_path / "run"
    assert main(["plan", str(tiny_phantom), "--out", str(run), "-c", "2d", "--no-preprocess", "-j", "1"]) == 0
    splits = json.loads((run / "splits.json").read_text())
    (run / "splits.json").write_text(json.dumps(splits[:2]))
    plans = json.loads((run / "plans.json").read_text())
    plans["configurations"]["2d"]["architecture"]["arch_kwargs"]["features_per_stage"] = [4, 8, 16, 16]
    (run / "plans.json").write_text(json.dumps(plans))
    assert main(["submit", str(run), "-c", "2d", "--scheduler", "slurm", "--wait", "--time", "00:20:00",
                 TRAIN]) == 0  # every fold of splits.json: 0 and 1
    jobs = {j["name"]: j for j in json.loads((run / "jobs" / "train.json").read_text())["jobs"]}
    assert list(jobs) == ["preprocess", "train_2d_fold0", "train_2d_fold1", "after_2d"]
    assert all(j["state"] == "completed" and j["job_id"].isdigit() for j in jobs.values())
    assert jobs["after_2d"]["command"][-4:] == ["crossval", str(run.resolve()), "-c", "2d"]
    t = {n: _times(Path(j["log"])) for n, j in jobs.items()}
    assert t["preprocess"][1] <= min(t["train_2d_fold0"][0], t["train_2d_fold1"][0])
    assert max(t["train_2d_fold0"][1], t["train_2d_fold1"][1]) <= t["after_2d"][0]
    for name in ("2d/cv_summary.json", "2d/postprocessing.json", "best.json"):
        assert (run / name).is_file(), name

    # prediction parts fanned out on SLURM into one folder
    assert main(["submit", str(run), "--predict", "-i", str(tiny_phantom / "imagesTs"), "-o", str(tmp_path / "fan"),
                 "--num-parts", "2", "--scheduler", "slurm", "--wait", "--predict-args=-c 2d -f 0 1 --no-tta"]) == 0
    assert sorted(p.name for p in (tmp_path / "fan").glob("*.nii.gz")) == ["phantom005_frame01.nii.gz",
                                                                          "phantom005_frame02.nii.gz"]


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_failed_slurm_job_cancels_its_dependents_and_is_resubmitted_alone(slurm_cluster, tmp_path):
    flag = tmp_path / "fixed"
    jobs = [Job("ok", _py("import time; time.sleep(2)")),
            Job("flaky", _py(f"import pathlib, sys, time; time.sleep(2); pathlib.Path({str(flag)!r}).is_file() "
                             "or sys.exit(5)")),
            Job("after", _py("print('after')"), ["ok", "flaky"], throttled=False)]
    with pytest.raises(AutosegError) as e:
        _launch(JobSet(tmp_path, "train", "slurm", {"max_parallel": 1, "poll_s": 0.5}, jobs), False, True)
    msg = str(e.value)
    assert f"flaky failed, log {tmp_path / 'jobs' / 'logs' / 'flaky-1.log'}" in msg
    assert "after cancelled (a job it depends on failed)" in msg
    first = JobSet.load(tmp_path, "train")
    ok_id = first.job("ok").job_id
    ok_t, flaky_t = _times(Path(first.job("ok").log)), _times(Path(first.job("flaky").log))
    assert ok_t[1] <= flaky_t[0] or flaky_t[1] <= ok_t[0]  # --max-parallel 1 (singleton): one after the other
    flag.touch()
    assert main(["submit", str(tmp_path), "--resubmit-failed", "--wait"]) == 0
    js = JobSet.load(tmp_path, "train")
    assert {j.name: (j.state, j.attempt) for j in js.jobs} == {
        "ok": ("completed", 1), "flaky": ("completed", 2), "after": ("completed", 2)}
    assert js.job("ok").job_id == ok_id and "after" in Path(js.job("after").log).read_text()


def test_a_refused_submission_withdraws_the_jobs_already_queued(slurm_cluster, tmp_path, monkeypatch):
    from autoseg.cluster import slurm

    real_submit, calls = slurm.submit, []

    def refuse_second(js, job, dep_ids):
        calls.append(job.name)
        if len(calls) == 2:
            raise AutosegError("sbatch refused job b: invalid partition")
        real_submit(js, job, dep_ids)

    monkeypatch.setattr(slurm, "submit", refuse_second)
    jobs = [Job("a", _py("import time; time.sleep(30)")), Job("b", _py("pass"), ["a"])]
    with pytest.raises(AutosegError, match="invalid partition"):
        _launch(JobSet(tmp_path, "train", "slurm", {"poll_s": 0.5}, jobs), False, True)
    a = JobSet.load(tmp_path, "train").job("a")
    assert a.state == "cancelled" and a.job_id.isdigit()
    for _ in range(40):  # a cancelled job that had started may show as completing for a moment
        queue = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
        if a.job_id not in queue:
            break
        time.sleep(0.25)
    assert a.job_id not in queue
