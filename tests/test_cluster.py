"""autoseg.cluster: the job graph, sbatch command lines, the local pool (order, throttle, failure, resubmission)
and the deterministic split of prediction inputs."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from autoseg.cli import _parser, main
from autoseg.cluster import local
from autoseg.cluster.graph import AFTER_FOLDS_CROSSVAL, expand_template, predict_jobs, train_jobs
from autoseg.cluster.jobs import Job, JobSet, autoseg_command, prepare_attempt
from autoseg.cluster.shard import case_selector, output_complete, select_part
from autoseg.cluster.slurm import sbatch_args
from autoseg.cluster.submit import _launch, resubmit_failed
from autoseg.core.errors import AutosegError
from autoseg.io.workspace import Workspace


# -- sharding --------------------------------------------------------------------------------------------------
def test_parts_are_round_robin_over_sorted_case_ids():
    cases = [(c, None) for c in ["g", "c", "a", "f", "b", "e", "d"]]  # any order in, sorted ids decide
    assert [c for c, _ in select_part(cases, 3, 1)] == ["b", "e"]
    assert [c for c, _ in select_part(cases, 3, 0)] == ["a", "d", "g"]
    for n in range(1, 9):
        parts = [[c for c, _ in select_part(cases, n, k)] for k in range(n)]
        flat = [c for p in parts for c in p]
        assert sorted(flat) == sorted(c for c, _ in cases) and len(flat) == len(set(flat))  # each case exactly once
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize("n,k", [(0, 0), (2, 2), (3, -1)])
def test_bad_part_numbers_are_refused(n, k):
    with pytest.raises(AutosegError, match="--num-parts|--part-id"):
        select_part([("a", None)], n, k)


def test_continue_skips_only_complete_outputs(tmp_path, capsys):
    (tmp_path / "a.nii.gz").write_bytes(b"x")
    (tmp_path / "b.nii.gz").write_bytes(b"x")  # label written, probabilities not yet: not complete with --save-prob
    (tmp_path / "a.npz").write_bytes(b"x")
    (tmp_path / ".c.nii.gz.autoseg-tmp-1.nii.gz").write_bytes(b"x")  # a killed writer's temporary file
    assert output_complete(tmp_path, "a", ".nii.gz", True) and not output_complete(tmp_path, "b", ".nii.gz", True)
    assert output_complete(tmp_path, "b", ".nii.gz", False) and not output_complete(tmp_path, "c", ".nii.gz", False)
    inputs = [(c, [tmp_path / f"{c}_0000.nii.gz"]) for c in "abc"]
    assert [c for c, _ in case_selector(1, 0, tmp_path, True, True)(inputs)] == ["b", "c"]
    assert "3 of 3 case(s), 1 already done (--continue), 2 to predict" in capsys.readouterr().out
    assert [c for c, _ in case_selector(2, 0, tmp_path, True, False)(inputs)] == ["c"]


# -- job graph and sbatch lines --------------------------------------------------------------------------------
def test_training_graph_preprocess_folds_then_one_dependent_step_per_configuration(tmp_path):
    ws = Workspace.at(tmp_path / "run")
    jobs = train_jobs(ws, ["2d", "3d_fullres"], ["0", "1"], ["--epochs", "1"], "{autoseg} evaluate {run}/{config}",
                      preprocess=True)
    by = {j.name: j for j in jobs}
    assert list(by) == ["preprocess", "train_2d_fold0", "train_2d_fold1", "after_2d", "train_3d_fullres_fold0",
                        "train_3d_fullres_fold1", "after_3d_fullres"]
    assert by["train_3d_fullres_fold1"].command == autoseg_command() + [
        "train", str(ws.root), "-c", "3d_fullres", "-f", "1", "--epochs", "1"]
    assert by["train_2d_fold0"].depends_on == ["preprocess"]
    assert by["after_2d"].depends_on == ["train_2d_fold0", "train_2d_fold1"]
    assert by["after_2d"].command == autoseg_command() + ["evaluate", f"{ws.root}/2d"]
    assert not by["after_2d"].throttled and by["train_2d_fold1"].throttled
    no_pre = train_jobs(ws, ["2d"], ["all"], [], None, preprocess=False)
    assert [(j.name, j.depends_on) for j in no_pre] == [("train_2d_foldall", [])]


def test_a_fold_with_a_checkpoint_is_resumed_and_never_started_over(tmp_path):
    ws = Workspace.at(tmp_path / "run")
    (ws.fold_dir("2d", 1)).mkdir(parents=True)
    (ws.fold_dir("2d", 1) / "checkpoint_latest.pt").write_bytes(b"x")
    jobs = {j.name: j for j in train_jobs(ws, ["2d"], ["0", "1"], ["--epochs", "1"], None, False)}
    assert jobs["train_2d_fold0"].command[-6:] == ["-c", "2d", "-f", "0", "--epochs", "1"]
    assert "--resume" not in jobs["train_2d_fold0"].command
    assert jobs["train_2d_fold1"].command[-5:] == ["-f", "1", "--resume", "--epochs", "1"]
    # fold 0 failed after writing a checkpoint: its resubmission continues it
    (ws.fold_dir("2d", 0)).mkdir()
    (ws.fold_dir("2d", 0) / "checkpoint_latest.pt").write_bytes(b"x")
    js = JobSet(ws.root, "train", "local", {}, list(jobs.values()))
    prepare_attempt(js, jobs["train_2d_fold0"])
    assert jobs["train_2d_fold0"].command[-5:] == ["-f", "0", "--resume", "--epochs", "1"]
    assert jobs["train_2d_fold0"].command.count("--resume") == 1


def test_crossval_template_expands_to_the_crossval_command(tmp_path):
    assert expand_template(AFTER_FOLDS_CROSSVAL, tmp_path / "my run", "2d") == autoseg_command() + [
        "crossval", str(tmp_path / "my run"), "-c", "2d"]
    with pytest.raises(AutosegError, match="unknown placeholder"):
        expand_template("{autoseg} x {fold}", tmp_path, "2d")


def test_invalid_job_arguments_fail_at_submission(tmp_path):
    """The job graph parses the jobs' arguments with the command line it is handed (cluster imports no cli)."""
    with pytest.raises(AutosegError, match="train jobs are not valid"):
        train_jobs(Workspace.at(tmp_path), ["2d"], ["0"], ["--epochs", "many"], None, False, parser=_parser())
    with pytest.raises(AutosegError, match="predict jobs are not valid"):
        predict_jobs(Workspace.at(tmp_path), tmp_path, tmp_path / "o", 2, ["--stepp", "0.5"], parser=_parser())
    assert len(predict_jobs(Workspace.at(tmp_path), tmp_path, tmp_path / "o", 2, ["--step", "0.5"],
                            parser=_parser())) == 2


def test_sbatch_lines_carry_dependencies_resources_and_the_parallel_limit(tmp_path):
    ws = Workspace.at(tmp_path)
    jobs = train_jobs(ws, ["2d"], ["0", "1", "2"], [], "{autoseg} evaluate {run}", preprocess=True)
    js = JobSet(ws.root, "train", "slurm", {"partition": "gpu", "gpus_per_job": 1, "time": "02:00:00",
                                            "max_parallel": 2, "sbatch_args": ["--qos=low"]}, jobs)
    for j in jobs:
        j.log = str(js.log_file(j))
    lines = {j.name: sbatch_args(js, j, ["11", "12"] if j.depends_on else []) for j in jobs}
    f0, f2, after = lines["train_2d_fold0"], lines["train_2d_fold2"], lines["after_2d"]
    assert "--dependency=afterok:11:12,singleton" in f0 and "--dependency=afterok:11:12" in after
    assert {"--partition=gpu", "--gres=gpu:1", "--time=02:00:00", "--qos=low", "--kill-on-invalid-dep=yes"} <= set(f0)
    assert f0[-1] == str(js.script(jobs[1])) and not any(a.startswith("--dependency") for a in lines["preprocess"])
    names = [next(a for a in lines[n] if a.startswith("--job-name=")) for n in ("train_2d_fold0", "train_2d_fold1",
                                                                                "train_2d_fold2")]
    assert names[0] == names[2] != names[1] and names[0].endswith("slot0")  # two slots for three folds
    assert f2[f2.index("--kill-on-invalid-dep=yes") - 1].startswith("--output=")


# -- the local pool ---------------------------------------------------------------------------------------------
def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _stamp(path: Path, extra: str = "") -> list[str]:
    """A job that records when it ran (start, end) in ``path``, taking 0.3 s."""
    return _py(f"import time,sys; t=time.time(); time.sleep(0.3); {extra}"
               f"open({str(path)!r},'w').write(f'{{t}} {{time.time()}}')")


def test_local_pool_runs_in_dependency_order_within_the_limit(tmp_path):
    t = tmp_path / "t"
    t.mkdir()
    jobs = [Job("a", _stamp(t / "a"), throttled=False), Job("b", _stamp(t / "b"), ["a"]),
            Job("c", _stamp(t / "c"), ["a"]), Job("d", _stamp(t / "d"), ["b", "c"], throttled=False)]
    js = _launch(JobSet(tmp_path, "train", "local", {"max_parallel": 1}, jobs), dry_run=False, wait=False)
    span = {n: tuple(map(float, (t / n).read_text().split())) for n in "abcd"}
    assert span["a"][1] <= min(span["b"][0], span["c"][0]) and max(span["b"][1], span["c"][1]) <= span["d"][0]
    assert span["b"][1] <= span["c"][0] or span["c"][1] <= span["b"][0]  # max_parallel 1: never together
    saved = json.loads(js.path.read_text())
    assert [j["state"] for j in saved["jobs"]] == ["completed"] * 4
    assert all(Path(j["log"]).is_file() and j["shell"] for j in saved["jobs"])


def test_local_pool_runs_two_at_once_when_allowed(tmp_path):
    jobs = [Job(n, _stamp(tmp_path / n)) for n in "ab"]
    _launch(JobSet(tmp_path, "train", "local", {"max_parallel": 2}, jobs), dry_run=False, wait=False)
    (a0, a1), (b0, b1) = (tuple(map(float, (tmp_path / n).read_text().split())) for n in "ab")
    assert a0 < b1 and b0 < a1  # overlapping


def test_failed_job_is_reported_with_its_log_and_resubmitted_alone(tmp_path):
    flag = tmp_path / "fixed"
    t = tmp_path / "t"
    t.mkdir()
    fail_until_fixed = f"import pathlib; pathlib.Path({str(flag)!r}).is_file() or sys.exit(3); "
    jobs = [Job("ok", _stamp(t / "ok")), Job("flaky", _stamp(t / "flaky", fail_until_fixed)),
            Job("after", _stamp(t / "after"), ["ok", "flaky"])]
    with pytest.raises(AutosegError) as e:
        _launch(JobSet(tmp_path, "train", "local", {"max_parallel": 1}, jobs), dry_run=False, wait=False)
    msg = str(e.value)
    flaky_log = tmp_path / "jobs" / "logs" / "flaky-1.log"
    assert f"flaky failed, log {flaky_log}" in msg and "after cancelled" in msg and "--resubmit-failed" in msg
    assert "exit status 3" in flaky_log.read_text()
    ok_time = (t / "ok").stat().st_mtime_ns
    flag.touch()
    js = resubmit_failed(tmp_path, "train")
    assert {j.name: (j.state, j.attempt) for j in js.jobs} == {
        "ok": ("completed", 1), "flaky": ("completed", 2), "after": ("completed", 2)}
    assert (t / "ok").stat().st_mtime_ns == ok_time and (t / "after").is_file()
    assert (tmp_path / "jobs" / "logs" / "flaky-2.log").is_file() and flaky_log.is_file()


def test_default_local_parallelism_is_one_per_gpu(monkeypatch):
    monkeypatch.setattr(local, "gpu_count", lambda: 0)
    assert local.default_parallel(None) == 1
    monkeypatch.setattr(local, "gpu_count", lambda: 4)
    assert local.default_parallel(None) == 4 and local.default_parallel(2) == 2


@pytest.mark.parametrize("gpus,per_job,expected", [(2, None, {"0", "1"}), (4, 2, {"0,1", "2,3"})])
def test_local_pool_gives_each_concurrent_job_its_own_gpus(tmp_path, monkeypatch, gpus, per_job, expected):
    monkeypatch.setattr(local, "gpu_count", lambda: gpus)
    code = "import os, time; time.sleep(0.5); open({!r}, 'w').write(os.environ['CUDA_VISIBLE_DEVICES'])"
    jobs = [Job(n, _py(code.format(str(tmp_path / n)))) for n in "ab"]
    _launch(JobSet(tmp_path, "train", "local", {"gpus_per_job": per_job}, jobs), dry_run=False, wait=False)
    assert {(tmp_path / n).read_text() for n in "ab"} == expected


def test_a_second_submission_waits_for_the_first(tmp_path):
    js = JobSet(tmp_path, "train", "local", {}, [Job("x", _py("pass"), state="running", job_id="pid 1")])
    js.save()
    with pytest.raises(AutosegError, match="still queued or running"):
        _launch(JobSet(tmp_path, "train", "local", {}, [Job("y", _py("pass"))]), dry_run=False, wait=False)
    gone = subprocess.Popen(_py("pass"))
    gone.wait()  # a pool that was killed left a 'running' job whose process no longer exists
    js.jobs[0].job_id = f"pid {gone.pid}"
    js.save()
    _launch(JobSet(tmp_path, "train", "local", {}, [Job("y", _py("pass"))]), dry_run=False, wait=False)
    assert JobSet.load(tmp_path, "train").jobs[0].state == "completed"


# -- the command line --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def planned(tiny_phantom, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("submit") / "run"
    assert main(["plan", str(tiny_phantom), "--out", str(run), "--no-preprocess", "-j", "1"]) == 0
    return run


def test_dry_run_prints_jobs_and_sbatch_lines_and_writes_nothing(planned, capsys):
    assert main(["submit", str(planned), "-c", "2d", "3d_fullres", "-f", "0", "1", "--scheduler", "slurm",
                 "--partition", "gpu", "--gpus-per-job", "1", "--time", "24:00:00", "--dry-run",
                 "--after-folds", "{autoseg} evaluate {run}/{config}"]) == 0
    out = capsys.readouterr().out
    assert out.count("sbatch --parsable") == 7 and "preprocess" in out  # not preprocessed yet: a job for it
    assert "'--dependency=afterok:<train_2d_fold0>:<train_2d_fold1>'" in out
    assert f"train {planned} -c 3d_fullres -f 1\n" in out  # nothing trained yet: no --resume
    assert "--gres=gpu:1" in out and "--dependency=afterok:<preprocess>" in out
    assert not (planned / "jobs").exists()


def test_submit_command_line_errors_are_one_line(planned, capsys):
    assert main(["submit", str(planned), "-c", "2d", "--scheduler", "slurm", "--time", "soon", "--dry-run"]) == 2
    assert main(["submit", str(planned), "-c", "4d", "--scheduler", "local", "--dry-run"]) == 2
    assert main(["submit", str(planned), "-c", "2d"]) == 2
    assert main(["submit", str(planned), "--resubmit-failed"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "--time soon" in err[0] and "'4d' is not in the plans" in err[1] and "--scheduler" in err[2]
    assert "no train submission" in err[3] and len(err) == 4


def test_the_command_line_checks_job_arguments_before_submitting(planned, capsys):
    """`autoseg submit` hands its own parser to the job graph: a typo in --train-args/--predict-args fails at once,
    not in every job, and nothing is written."""
    assert main(["submit", str(planned), "-c", "2d", "--scheduler", "local", "--dry-run",
                 "--train-args=--epochs many"]) == 2
    assert "the arguments of the train jobs are not valid" in capsys.readouterr().err
    assert main(["submit", str(planned), "--predict", "-i", str(planned), "-o", str(planned / "o"), "--scheduler",
                 "local", "--dry-run", "--predict-args=--stepp 0.5"]) == 2
    assert "the arguments of the predict jobs are not valid" in capsys.readouterr().err
    assert not (planned / "jobs").exists()


def test_submit_takes_keywords_and_words(planned, capsys):
    """The Python face of `autoseg submit`: keyword-only settings; job options as words or as one string."""
    from autoseg.cluster.submit import submit

    with pytest.raises(TypeError):
        submit(planned, "local")  # the scheduler is a keyword
    js = submit(planned, scheduler="local", configurations=["2d"], folds=["0"], train_args=["--epochs", "2"],
                after_folds="", dry_run=True)
    assert [j.name for j in js.jobs] == ["preprocess", "train_2d_fold0"]  # "": no step after the folds
    assert js.jobs[1].command[-2:] == ["--epochs", "2"]
    js = submit(planned, scheduler="local", configurations=["2d"], folds=["0"], train_args="--epochs 3",
                dry_run=True)
    assert js.jobs[1].command[-2:] == ["--epochs", "3"] and js.jobs[-1].command[-4:-2] == ["crossval",
                                                                                         str(planned.resolve())]
    assert not (planned / "jobs").exists()


@pytest.mark.slow
def test_local_study_preprocess_fold_then_dependent_step(planned, tiny_phantom, capsys):
    after = f"{{autoseg}} predict {{run}} -i {tiny_phantom / 'imagesTs'} -o {{run}}/after_{{config}} -c {{config}} " \
            "-f 0 --no-tta"
    assert main(["submit", str(planned), "-c", "2d", "-f", "0", "--scheduler", "local", "--after-folds", after,
                 "--train-args=--epochs 1 --iters-per-epoch 2 --val-iters 1 --batch-size 2 --num-workers 0"]) == 0
    assert (planned / "2d" / "fold_0" / "checkpoint_final.pt").is_file()
    assert len(list((planned / "after_2d").glob("*.nii.gz"))) == 2
    capsys.readouterr()
    assert main(["submit", str(planned), "--status"]) == 0
    table = capsys.readouterr().out
    assert all(f"{n}  completed" in table for n in ("preprocess    ", "train_2d_fold0", "after_2d      "))
    # preprocessing is now done: a new submission has no preprocess job
    assert main(["submit", str(planned), "-c", "2d", "--scheduler", "local", "--dry-run"]) == 0
    assert "preprocess" not in capsys.readouterr().out


def test_slurm_commands_missing_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    JobSet(tmp_path, "train", "slurm", {}, [Job("x", _py("pass"), state="pending", job_id="7")]).save()
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert main(["submit", str(tmp_path), "--status"]) == 2
    assert main(["submit", str(tmp_path), "--resubmit-failed"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("squeue is not on PATH" in e for e in err)
