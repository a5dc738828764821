"""How many threads torch uses: chosen for the work and the machine unless the user said.

On a machine whose cores are busy, intra-op threads that wait for each other make a run many times slower
(13-26x measured on 2 cores, issue 14), while small models gain little from a second thread even when idle.
The rule: an explicit setting wins (`POLYMODAL_THREADS`, or `OMP_NUM_THREADS` / `MKL_NUM_THREADS`, which torch
reads itself); otherwise one thread per idle core (cores minus the 1-minute load average, at least 1), decided
once when a command starts (later, the load average counts this process's own threads).
"""

from __future__ import annotations

import os

USER_SETTINGS = ("POLYMODAL_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def user_threads() -> int | None:
    """The thread count the environment asks for, if any."""
    for name in USER_SETTINGS:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def idle_cores() -> int:
    """Cores this process may use minus the machine's 1-minute load average (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, int(cores - load + 0.5)))


def choose_threads() -> tuple[int, str]:
    """The thread count for this machine now, and why."""
    explicit = user_threads()
    if explicit is not None:
        return explicit, "set by the environment"
    return idle_cores(), "idle cores (cores minus the 1-minute load average)"


def set_threads() -> tuple[int, str]:
    """Apply `choose_threads()` to torch; returns the count and why."""
    import torch

    threads, why = choose_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads, why
