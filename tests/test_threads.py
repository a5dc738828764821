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
    assert threads.choose_threads()[0] == expected


def test_set_threads_applies_the_choice(no_setting: pytest.MonkeyPatch) -> None:
    import torch

    before = torch.get_num_threads()
    no_setting.setenv("POLYMODAL_THREADS", "1")
    try:
        assert threads.set_threads()[0] == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
