"""Torch's thread count: the environment wins, else one thread per idle core."""

from __future__ import annotations

import pytest

from polymodal import threads


@pytest.fixture
def no_setting(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in threads.USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    return monkeypatch


def test_environment_setting_wins(no_setting: pytest.MonkeyPatch) -> None:
    no_setting.setenv("OMP_NUM_THREADS", "3")
    no_setting.setattr(threads.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert threads.choose_threads() == (3, "set by the environment")


@pytest.mark.parametrize(("load", "expected"), [(0.1, 2), (0.7, 1), (1.2, 1), (12.0, 1)])
def test_busy_machine_gets_fewer_threads(no_setting: pytest.MonkeyPatch, load: float, expected: int) -> None:
    no_setting.setattr(threads.os, "getloadavg", lambda: (load, load, load))
    no_setting.setattr(threads, "busy_cores_now", lambda: 2.0)  # and the cores are busy now too
    assert threads.choose_threads()[0] == expected


@pytest.mark.parametrize(("now", "expected"), [(0.0, 2), (0.3, 2), (1.0, 1), (None, 1)])
def test_a_load_average_left_by_finished_work_is_checked_against_the_cores_busy_now(
        no_setting: pytest.MonkeyPatch, now: float | None, expected: int) -> None:
    no_setting.setattr(threads.os, "getloadavg", lambda: (1.0, 0.5, 0.2))  # e.g. a pip install that just ended
    no_setting.setattr(threads, "busy_cores_now", lambda: now)
    assert threads.choose_threads()[0] == expected


def test_busy_cores_now_reads_the_cpu_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([(100, 50), (200, 75)])  # 100 ticks over the window, 25 of them idle
    monkeypatch.setattr(threads, "cpu_times", lambda: next(ticks))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    assert threads.busy_cores_now(0.0) == pytest.approx(1.5)


def test_cpu_times_parses_proc_stat() -> None:
    if not threads.os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat here")
    total, idle = threads.cpu_times()
    assert 0 <= idle <= total and total > 0


def test_set_threads_applies_the_choice(no_setting: pytest.MonkeyPatch) -> None:
    import torch

    before = torch.get_num_threads()
    no_setting.setenv("POLYMODAL_THREADS", "1")
    try:
        assert threads.set_threads()[0] == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
