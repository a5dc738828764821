"""Per fusion method: parameters, FLOPs per record, training and inference throughput on CPU.

Inputs are pooled features of `--modalities` modalities of width `--width` (default 3 x 128), batch 128,
each method at its default options with the fused width set by `hidden` (default 128); the head is a linear
layer to 10 classes. FLOPs are counted with torch.utils.flop_counter (forward pass, per record).

    python benchmarks/fusion_speed.py [--modalities 3] [--width 128] [--hidden 128] [--steps 30]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from polymodal.fusion import FUSIONS
from polymodal.layers import EncoderOutput


def inputs(n: int, width: int, batch: int) -> tuple[dict[str, EncoderOutput], dict[str, torch.Tensor]]:
    feats = {f"m{i}": EncoderOutput(torch.randn(batch, width)) for i in range(n)}
    return feats, {m: torch.ones(batch, dtype=torch.bool) for m in feats}


def flops_per_record(fusion: torch.nn.Module, feats: dict, present: dict, batch: int) -> float:
    """Forward FLOPs per record, counted in train mode: in eval mode nn.MultiheadAttention takes a fused fast
    path that the counter does not see."""
    fusion.train()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fusion(feats, present)
    return counter.get_total_flops() / batch


def throughput(fusion: torch.nn.Module, head: torch.nn.Module, feats: dict, present: dict, batch: int, steps: int,
               train: bool) -> float:
    opt = torch.optim.AdamW(list(fusion.parameters()) + list(head.parameters()), lr=1e-3)
    target = torch.randint(0, 10, (batch,))
    fusion.train(train)

    def step() -> None:
        if train:
            loss = torch.nn.functional.cross_entropy(head(fusion(feats, present).fused), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
        else:
            with torch.no_grad():
                head(fusion(feats, present).fused)

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--modalities", type=int, default=3)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    torch.manual_seed(0)
    feats, present = inputs(args.modalities, args.width, args.batch)
    in_dims = {m: args.width for m in feats}
    print(f"{args.modalities} modalities x width {args.width}, hidden {args.hidden}, batch {args.batch}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'fusion':<16}{'params':>12}{'MFLOPs/rec':>12}{'train rec/s':>13}{'infer rec/s':>13}")
    for name in FUSIONS.names():
        fusion = FUSIONS.build(name, user={"hidden": args.hidden}, in_dims=in_dims)
        head = torch.nn.Linear(fusion.out_dim, 10)
        params = sum(p.numel() for p in fusion.parameters())
        flops = flops_per_record(fusion, feats, present, args.batch) / 1e6
        train = throughput(fusion, head, feats, present, args.batch, args.steps, train=True)
        infer = throughput(fusion, head, feats, present, args.batch, args.steps, train=False)
        print(f"{name:<16}{params:>12,}{flops:>12.2f}{train:>13,.0f}{infer:>13,.0f}", flush=True)


if __name__ == "__main__":
    main()
