"""Processes of a distributed run: who am I (rank, world), launching `devices: N` on one machine, and the few
collectives training needs (reduce a tensor, gather tensors of uneven length).

Three ways a run becomes distributed:
- a launcher started every process and says so in the environment: torchrun (`RANK`, `WORLD_SIZE`,
  `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`) or SLURM (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`,
  `SLURM_NODELIST`);
- `training.devices: N` on one machine without a launcher: this process becomes rank 0 and starts ranks 1..N-1
  by running the same command again (`sys.argv`) with those variables set, as torchrun would have;
- otherwise one process, no process group.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor

from polymodal.config import TrainingConfig

log = logging.getLogger(__name__)


@dataclass
class Processes:
    """This process's place in the run; `children` are the local ranks this process started (rank 0 only)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    closing: threading.Event = field(default_factory=threading.Event)

    @property
    def chief(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def device_count(cfg: TrainingConfig) -> int:
    """Processes per machine that `training.devices` asks for."""
    devices = cfg.devices
    if isinstance(devices, list):
        return len(devices)
    if isinstance(devices, str):
        if devices == "auto":
            return max(1, torch.cuda.device_count()) if accelerator(cfg) == "cuda" else 1
        if devices.lstrip("-").isdigit():
            n = int(devices)
            return torch.cuda.device_count() if n == -1 else n
        raise ValueError(f"training.devices: {devices!r} is not a number of devices, a list of GPU ids or 'auto'")
    return devices


def accelerator(cfg: TrainingConfig) -> str:
    """The torch device type: cpu, cuda or mps (`auto`: cuda when there is one)."""
    name = cfg.accelerator.lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ValueError("training.accelerator: 'gpu' but torch sees no CUDA device; use accelerator: cpu")
        return "cuda"
    if name in ("cpu", "mps"):
        return name
    raise ValueError(f"training.accelerator: {cfg.accelerator!r} is not one of cpu, gpu, cuda, mps, auto")


def launched() -> dict[str, str] | None:
    """RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT as a launcher (torchrun, SLURM, our own) set them."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return {"RANK": env["RANK"], "WORLD_SIZE": env["WORLD_SIZE"], "LOCAL_RANK": env.get("LOCAL_RANK", "0"),
                "MASTER_ADDR": env.get("MASTER_ADDR", "127.0.0.1"), "MASTER_PORT": env.get("MASTER_PORT", "29500")}
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env and env.get("SLURM_JOB_NAME") != "bash":
        nodes = env.get("SLURM_JOB_NODELIST", env.get("SLURM_NODELIST", "127.0.0.1"))
        port = env.get("MASTER_PORT", str(15000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))
        return {"RANK": env["SLURM_PROCID"], "WORLD_SIZE": env["SLURM_NTASKS"],
                "LOCAL_RANK": env.get("SLURM_LOCALID", "0"), "MASTER_ADDR": env.get("MASTER_ADDR", first_host(nodes)),
                "MASTER_PORT": port}
    return None


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: `node[03-05,07],gpu1` -> `node03`."""
    match = re.match(r"([^,\[]+)(\[([^\]]+)\])?", nodelist)
    if match is None:
        return nodelist
    prefix, ranges = match.group(1), match.group(3)
    return prefix if ranges is None else prefix + re.split(r"[-,]", ranges)[0]


def start(cfg: TrainingConfig) -> Processes:
    """Join (or create) the run's process group; one process when the run is not distributed."""
    kind = accelerator(cfg)
    per_node = device_count(cfg)
    wanted = per_node * cfg.num_nodes
    env = launched()
    children: list[subprocess.Popen[bytes]] = []
    if env is None and wanted > 1:
        if cfg.num_nodes > 1:
            raise ValueError(f"training.num_nodes: {cfg.num_nodes} machines need a launcher (torchrun or SLURM) on "
                             "each of them; see docs/scale.md")
        env, children = launch_local(per_node)
    closing = threading.Event()
    watch(children, closing)
    if env is None:
        return Processes(device=torch.device(kind))
    rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])
    if world != wanted:
        raise ValueError(f"the launcher started {world} processes but training.devices x training.num_nodes = "
                         f"{per_node} x {cfg.num_nodes} = {wanted}; make them agree")
    device = torch.device(kind, gpu_id(cfg, local)) if kind == "cuda" else torch.device(kind)
    if kind == "cuda":
        torch.cuda.set_device(device)
    os.environ.update(MASTER_ADDR=env["MASTER_ADDR"], MASTER_PORT=env["MASTER_PORT"])
    dist.init_process_group("nccl" if kind == "cuda" else "gloo", rank=rank, world_size=world,
                            timeout=timedelta(minutes=30))
    return Processes(rank, world, local, device, children, closing)


def gpu_id(cfg: TrainingConfig, local_rank: int) -> int:
    return cfg.devices[local_rank] if isinstance(cfg.devices, list) else local_rank


def launch_local(n: int) -> tuple[dict[str, str], list[subprocess.Popen[bytes]]]:
    """Start local ranks 1..n-1 by running this program again; this process becomes rank 0."""
    main = sys.modules.get("__main__")
    if main is None or not getattr(main, "__file__", None):
        raise ValueError(f"training.devices: {n} starts {n} processes by running this program again, which needs a "
                         "script (not an interactive session); run a script or the polymodal command, or use torchrun")
    env = {"WORLD_SIZE": str(n), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    command = [sys.executable, *python_flags(), *program_args(main)]
    children = [subprocess.Popen(command, env={**os.environ, **env, "RANK": str(r), "LOCAL_RANK": str(r)})
                for r in range(1, n)]
    os.environ.update(env, RANK="0", LOCAL_RANK="0")  # this process's own part, as torchrun would have set it
    return {**env, "RANK": "0", "LOCAL_RANK": "0"}, children


def python_flags() -> list[str]:
    return [f"-W{w}" for w in sys.warnoptions]


def program_args(main: object) -> list[str]:
    """`sys.argv` as a command: `-m package.module args` when run with -m, else the script and its args."""
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return ["-m", spec.name.removesuffix(".__main__"), *sys.argv[1:]]
    return [os.path.abspath(sys.argv[0]), *sys.argv[1:]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def watch(children: list[subprocess.Popen[bytes]], closing: threading.Event, grace: float = 30.0) -> None:
    """If a child rank fails while this one still trains, stop the others and this one rather than wait for a
    collective that never comes (after `grace` seconds: this rank may be failing too and about to say why)."""

    def wait() -> None:
        for child in children:
            if child.wait() != 0 and not closing.wait(grace):
                log.error("rank process %d exited with status %d; stopping the run", child.pid, child.returncode)
                for other in children:
                    if other.poll() is None:
                        other.terminate()
                os._exit(1)

    if children:
        threading.Thread(target=wait, daemon=True).start()


def finish(procs: Processes) -> None:
    """Leave the process group (training's collectives are over: rank 0 alone evaluates and writes the run); rank 0
    waits for the ranks it started."""
    procs.closing.set()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for child in procs.children:
        child.wait()
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE") if procs.children else ():
        os.environ.pop(name, None)  # a later run in this process starts its own ranks again


def reduce(x: Tensor, op: str) -> Tensor:
    """Sum or mean of `x` over all processes (as is in one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x / dist.get_world_size() if op == "mean" else x


def gather(x: Tensor) -> Tensor:
    """(N_r, ...) from each process -> (sum N_r, ...), ranks in order (lengths may differ)."""
    if not (dist.is_available() and dist.is_initialized()):
        return x
    world = dist.get_world_size()
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)])


def barrier() -> None:
    """Wait until every process got here (no-op in one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """Rank 0's decision, for every process (e.g. stop early)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())
