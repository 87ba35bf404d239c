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
