"""The contrastive loss under DDP sees the negatives of every process: 2 processes x batch 16 give the loss and
gradients of 1 process x batch 32. Two CPU processes (gloo), launched in a subprocess like tests/test_ddp.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from polymodal.data.batch import Batch
from polymodal.output import Output
from polymodal.objectives import Contrastive

N, DIMS = 32, {"a": 6, "b": 5}

SCRIPT = """
import os, sys
import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
sys.path.insert(0, {here!r})
from test_contrastive_ddp import batch_and_output, objective

def rank_main(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    ddp = DistributedDataParallel(objective())
    batch, output = batch_and_output(torch.arange(rank, {n}, 2))  # the rows DistributedSampler gives rank r
    loss = ddp(None, batch, output)
    loss.backward()
    grads = {{k: p.grad for k, p in ddp.module.named_parameters()}}
    torch.save({{"loss": loss.detach(), "grads": grads}}, f"{{out}}/rank{{rank}}.pt")
    dist.destroy_process_group()

if __name__ == "__main__":
    torch.multiprocessing.spawn(rank_main, args=(int(sys.argv[1]), sys.argv[2]), nprocs=2)
"""


def objective() -> Contrastive:
    torch.manual_seed(0)
    return Contrastive(DIMS, fused_dim=4, embed_dim=8)


def batch_and_output(rows: torch.Tensor) -> tuple[Batch, Output]:
    """Records `rows` of one fixed global batch; b is missing on records 3, 5 and 7 (odd: rank 1 has fewer)."""
    g = torch.Generator().manual_seed(1)
    features = {m: torch.randn(N, d, generator=g)[rows] for m, d in DIMS.items()}
    missing_b = torch.isin(torch.arange(N), torch.tensor([3, 5, 7]))  # (N,)
    present = {"a": torch.ones(N, dtype=torch.bool)[rows], "b": ~missing_b[rows]}
    out = Output(logits=torch.zeros(len(rows), 0), fused=torch.zeros(len(rows), 4), features=features)
    return Batch({}, present, None, rows), out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_give_the_loss_and_gradients_of_one_with_the_whole_batch(tmp_path: Path) -> None:
    script = tmp_path / "launch.py"
    script.write_text(textwrap.dedent(SCRIPT.format(here=str(Path(__file__).parent), n=N)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(free_port()), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    single = objective()
    loss = single(None, *batch_and_output(torch.arange(N)))  # type: ignore[arg-type]
    loss.backward()
    for rank in (0, 1):
        ddp = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(ddp["loss"], loss.detach(), rtol=1e-5, atol=1e-6)
        for name, p in single.named_parameters():
            torch.testing.assert_close(ddp["grads"][name], p.grad, rtol=1e-4, atol=1e-6, msg=name)
