"""A stage's work time: the machine time it used, each process's wall time weighted by its share of the machine."""
import dgpo_lib.io_utils as io


def _cpuinfo(*cores):
    return "\n\n".join(f"processor\t: {i}\nphysical id\t: 0\ncore id\t\t: {c}" for i, c in enumerate(cores))


def test_hyperthread_siblings_count_as_one_core_and_cpu_ddp_processes_add_up(monkeypatch):
    import torch

    monkeypatch.setattr(io.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(io, "_cpuinfo", lambda: _cpuinfo(0, 0))  # two logical CPUs, one physical core
    assert io.physical_cores() == 1
    monkeypatch.setattr(io, "_cpuinfo", lambda: _cpuinfo(0, 1))
    assert io.physical_cores() == 2
    monkeypatch.setattr(io, "_cpuinfo", lambda: "")  # no /proc/cpuinfo: the usable CPUs
    assert io.physical_cores() == 2
    monkeypatch.setattr(io, "_cpuinfo", lambda: _cpuinfo(0, 1))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        monkeypatch.delenv("WORLD_SIZE", raising=False)
        assert io.machine_share() == (1.0 if torch.cuda.is_available() else 0.5)
        monkeypatch.setenv("WORLD_SIZE", "2")  # two one-thread processes of `accelerate launch --cpu`
        assert io.machine_share() == 1.0
    finally:
        torch.set_num_threads(threads)


def test_work_time_weights_each_part_by_its_share():
    from dgpo_lib.pipeline.records import work_s

    assert work_s({"wall_s": 100.0, "paused_s": 20, "earlier_processes_s": 50.0}) == 130.0  # an older record
    assert work_s({"wall_s": 100.0, "paused_s": 20, "machine_share": 0.5, "earlier_processes_s": 50.0,
                   "earlier_processes_work_s": 30.0}) == 70.0


CHILD = """
import json, sys, time
from pathlib import Path
import torch
from dgpo_lib.pauses import install, paused_s
from dgpo_lib.train.loop import run_training
install()
model = torch.nn.Linear(2, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
print("ready", flush=True)
rows = run_training(Path(sys.argv[1]), 6, lambda step: (time.sleep(0.4), {"loss": 1.0})[1], {"m": model},
                    {"o": opt}, {}, save_every=100, progress=False)
print(json.dumps({"step_s": [r["step_s"] for r in rows], "paused_s": paused_s()}), flush=True)
"""


def test_a_tstp_pause_is_left_out_of_the_steps_and_counted_as_paused(tmp_path):
    """kill -TSTP stops the stage and kill -CONT lets it go on; the stopped time is not in any step's step_s."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from dgpo_lib.data.loaders import REPO_ROOT
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "run")], cwd=REPO_ROOT, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**__import__("os").environ,
                                                                              "OMP_NUM_THREADS": "1"})
    assert p.stdout.readline().strip() == "ready"
    time.sleep(0.6)  # inside the first steps
    p.send_signal(signal.SIGTSTP)
    time.sleep(2.0)
    p.send_signal(signal.SIGCONT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err[-2000:]
    got = json.loads(out.strip().splitlines()[-1])
    assert 1.5 < got["paused_s"] < 4.0
    assert len(got["step_s"]) == 6 and sum(got["step_s"]) < 6 * 0.4 + 1.0  # 2.4 s of sleeping, not 4.4 s


def test_the_stage_record_keeps_the_pauses_of_its_process(tmp_path, monkeypatch):
    import json

    import dgpo_lib.pipeline.records as rec
    clock = iter([10.0, 40.0])  # paused seconds when the stage starts and when it ends
    monkeypatch.setattr(rec, "paused_s", lambda: next(clock))
    monkeypatch.setattr(rec, "stage_key", lambda cfg, name: "k")
    monkeypatch.setattr(rec, "provenance", lambda cfg, **kw: kw)
    records = rec.StageRecords(type("C", (), {"to_record": lambda self: {}})(), lambda name: tmp_path / name, tmp_path)
    (tmp_path / "kd_kd").mkdir()
    with records.running("kd_kd"):
        pass
    done = json.loads((tmp_path / "kd_kd" / "done.json").read_text())
    assert done["paused_s"] == 30 and rec.work_s(done) == (done["wall_s"] - 30) * done["machine_share"]
