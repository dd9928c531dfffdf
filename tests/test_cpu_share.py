"""Cores kept busy by other processes, from a fake /proc, and the thread count chosen beside them."""
from pathlib import Path

from autoseg.core.cpu_share import CpuShare, threads_beside


def _write_proc(root: Path, busy: int, idle: int, own: int, child: int) -> None:
    # /proc/stat: cpu user nice system idle iowait irq softirq steal
    (root / "stat").write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0\n")
    for pid, ticks in ((100, own), (101, child)):
        d = root / str(pid)
        d.mkdir(exist_ok=True)
        # pid (comm with ) and spaces) state ppid ... utime(14th) stime(15th)
        rest = ["S", "1"] + ["0"] * 9 + [str(ticks), "0"] + ["0"] * 30
        (d / "stat").write_text(f"{pid} (py thon) x) " + " ".join(rest) + "\n")
    (root / "100" / "task" / "100").mkdir(parents=True, exist_ok=True)
    (root / "100" / "task" / "100" / "children").write_text("101 ")


def test_others_are_the_machine_busy_time_less_this_process_and_its_workers(tmp_path):
    _write_proc(tmp_path, busy=1000, idle=1000, own=300, child=100)
    share = CpuShare(cores=2, proc=tmp_path, pid=100)
    # 400 ticks of the 2 cores (200 each) pass: 300 busy, of which this process used 150 and its worker 50
    _write_proc(tmp_path, busy=1300, idle=1100, own=450, child=150)
    assert abs(share.others() - 2 * (300 - 200) / 400) < 1e-9  # one other process kept half a core busy
    _write_proc(tmp_path, busy=1300, idle=1500, own=450, child=150)  # then the machine idles
    assert share.others() == 0.0


def test_no_proc_means_nothing_measured(tmp_path):
    assert CpuShare(cores=2, proc=tmp_path / "absent").others() is None


def test_threads_use_the_cores_the_others_leave():
    assert threads_beside(None, 8) == 8
    assert threads_beside(0.1, 2) == 2
    assert threads_beside(1.0, 2) == 1
    assert threads_beside(1.9, 2) == 1  # never fewer than one
    assert threads_beside(2.6, 8) == 5


def test_use_free_cores_says_when_it_takes_fewer_than_all(monkeypatch):
    """Training and predict share the note: said only when other processes leave fewer than all cores."""
    import torch

    from autoseg.core import cpu_share as S

    before = torch.get_num_threads()
    monkeypatch.setattr(S.os, "cpu_count", lambda: 4)
    try:
        for others, threads, said in ((3.0, 1, ["note: other processes keep 3.0 of 4 cores busy; predicting with "
                                                "1 thread(s)"]), (0.1, 4, [])):
            monkeypatch.setattr(S, "others_now", lambda seconds, o=others: o)
            lines = []
            assert S.use_free_cores(say=lines.append, doing="predicting") == (threads, others)
            assert lines == said and torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
