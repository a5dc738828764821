"""How many threads torch uses: chosen for the work and the machine unless the user said.

On a machine whose cores are busy, intra-op threads that wait for each other make a run many times slower
(13-26x measured on 2 cores, issue 14), while small models gain little from a second thread even when idle.
The rule: an explicit setting wins (`POLYMODAL_THREADS`, or `OMP_NUM_THREADS` / `MKL_NUM_THREADS`, which torch
reads itself); otherwise one thread per idle core (cores minus the busy ones, at least 1), decided once when a
command starts (later, the load average counts this process's own threads). Busy cores: the 1-minute load
average, or, where it says some are busy and Linux's /proc/stat is there, the smaller of it and the cores busy
over the next 0.2 s: the load average decays over minutes and still counts work that just ended (a `pip
install` right before the command), so an idle machine would get one thread.
"""

from __future__ import annotations

import os
import time

USER_SETTINGS = ("POLYMODAL_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def user_threads() -> int | None:
    """The thread count the environment asks for, if any."""
    for name in USER_SETTINGS:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def idle_cores() -> int:
    """Cores this process may use minus the busy ones (module docstring; at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if int(cores - busy + 0.5) < cores:  # the load average says some are busy: are they, now?
        now = busy_cores_now()
        busy = busy if now is None else min(busy, now)
    return max(1, min(cores, int(cores - busy + 0.5)))


def busy_cores_now(window: float = 0.2) -> float | None:
    """How many of the machine's cores other work keeps busy over the next `window` seconds (Linux: from
    /proc/stat's idle and I/O-wait time), or None where that cannot be read."""
    try:
        first = cpu_times()
        time.sleep(window)
        second = cpu_times()
    except (OSError, ValueError, IndexError):
        return None
    total, idle = second[0] - first[0], second[1] - first[1]
    return (os.cpu_count() or 1) * (1.0 - idle / total) if total > 0 else None


def cpu_times() -> tuple[int, int]:
    """(total, idle + I/O wait) clock ticks of all cores since boot, from /proc/stat's first line."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    return sum(ticks), ticks[3] + ticks[4]


def choose_threads() -> tuple[int, str]:
    """The thread count for this machine now, and why."""
    explicit = user_threads()
    if explicit is not None:
        return explicit, "set by the environment"
    return idle_cores(), "idle cores (cores minus the busy ones)"


def set_threads() -> tuple[int, str]:
    """Apply `choose_threads()` to torch; returns the count and why."""
    import torch

    threads, why = choose_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads, why
