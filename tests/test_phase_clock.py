import time

import pytest

from dgpo_lib.train.phase_clock import PhaseClock


def test_phases_add_up_and_unused_ones_read_zero():
    clock = PhaseClock(("a", "b", "c"))
    for _ in range(2):
        with clock("a"):
            time.sleep(0.01)
    with clock("b"):
        pass
    m = clock.metrics()
    assert set(m) == {"phase_a_s", "phase_b_s", "phase_c_s"}
    assert m["phase_a_s"] >= 0.02 and 0 <= m["phase_b_s"] < 0.01 and m["phase_c_s"] == 0.0


def test_a_phase_that_raises_is_still_timed_and_an_unknown_phase_is_refused():
    clock = PhaseClock(("a",))
    with pytest.raises(RuntimeError):
        with clock("a"):
            time.sleep(0.01)
            raise RuntimeError
    assert clock.seconds["a"] >= 0.01
    with pytest.raises(KeyError, match="unknown phase 'b'"):
        with clock("b"):
            pass
