"""Pauses a stage knows about: `kill -TSTP <pid>` stops a stage process and `kill -CONT <pid>` lets it go on, and the
time in between is left out of its training rows' `step_s`/`val_s` and recorded as the stage's `paused_s`, so its
work time (`pipeline.records.work_s`) counts only the time it ran. (Stopping a stage while tests or benchmarks use
the cores keeps their timings clean; a plain SIGSTOP cannot be caught and would count as work.)

`python -m dgpo_lib.pipeline.run_stage` installs the handlers; Ctrl-Z in its terminal pauses the same way.
"""
from __future__ import annotations

import os
import signal
import threading
import time

_STATE = {"paused_s": 0.0, "since": None}


def paused_s() -> float:
    """Seconds this process has spent stopped through SIGTSTP since it started (a pause under way included)."""
    since = _STATE["since"]
    return _STATE["paused_s"] + (time.time() - since if since is not None else 0.0)


def mark() -> tuple[float, float]:
    """A start mark for `working_s`."""
    return time.perf_counter(), paused_s()


def working_s(since: tuple[float, float]) -> float:
    """Seconds since `since` (a `mark()`), less the time the process spent paused in between."""
    return time.perf_counter() - since[0] - (paused_s() - since[1])


def _on_tstp(signum, frame):
    _STATE["since"] = time.time()
    os.kill(os.getpid(), signal.SIGSTOP)  # the stop itself: the process stays here until SIGCONT


def _on_cont(signum, frame):
    if _STATE["since"] is not None:
        _STATE["paused_s"] += time.time() - _STATE["since"]
        _STATE["since"] = None


def install() -> bool:
    """Count SIGTSTP..SIGCONT pauses from now on; False where signals cannot be handled (not the main thread, or no
    SIGTSTP on this platform). Python runs the handler between bytecodes, so a stop waits for the operator under way
    (a few seconds at most in a training step)."""
    if not hasattr(signal, "SIGTSTP") or threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGTSTP, _on_tstp)
    signal.signal(signal.SIGCONT, _on_cont)
    return True
