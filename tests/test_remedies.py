"""Imbalance remedies: the registry agrees with the config's choices, and every registered remedy passes the same
battery through the coordinator's hooks."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import torch
from test_imbalance import mlp_model, multiclass, vector_batch

from polymodal.config import ImbalanceConfig
from polymodal.training.imbalance import Imbalance
from polymodal.training.remedies import REMEDIES, Remedy


def test_config_choices_are_the_registered_remedies() -> None:
    choices = typing.get_args(ImbalanceConfig.model_fields["method"].annotation)
    assert set(choices) == set(REMEDIES.names())
    description = ImbalanceConfig.model_fields["method"].description or ""
    assert all(name in description for name in REMEDIES.names())


def one_step(method: str, epoch: int = 0) -> tuple[Imbalance, torch.nn.Module, dict[str, torch.Tensor]]:
    """One training step and one validation batch of a concat model through every hook of the coordinator."""
    torch.manual_seed(0)
    model, task, batch = mlp_model(), multiclass(), vector_batch()
    imbalance = Imbalance(model, task, ImbalanceConfig(method=method, blend_window=1), seed=0)  # type: ignore[arg-type]
    optimizer = torch.optim.SGD([*model.parameters(), *imbalance.heads.parameters()], lr=0.1)
    out = model(batch)
    task_loss = task.loss(out.logits, batch.target)
    unimodal = imbalance.unimodal_losses(batch, out)
    loss = imbalance.loss(model, task_loss, [*out.aux_losses.values()], unimodal)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    imbalance.observe_train(batch, out, task_loss, unimodal)
    imbalance.before_optimizer_step(model, lambda x, op: x, epoch)
    grads = {m: torch.cat([p.grad.flatten() for p in e.parameters()]) for m, e in model.encoders.items()}
    optimizer.step()
    imbalance.after_optimizer_step(model)
    model.eval()
    with torch.no_grad():
        imbalance.observe_val(batch, model(batch))
    logs = {**imbalance.val_epoch_end(lambda x, op: x), **imbalance.train_epoch_end(lambda x, op: x)}
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in logs.values()), logs
    return imbalance, model, grads


@pytest.mark.parametrize("method", REMEDIES.names())
def test_every_remedy_through_the_hooks(method: str) -> None:
    imbalance, model, grads = one_step(method)
    remedy = imbalance.remedy
    assert isinstance(remedy, Remedy) and REMEDIES.get(method) is type(remedy)
    for m, g in grads.items():  # gradients reach every modality's encoder, finite
        assert torch.isfinite(g).all() and g.abs().sum() > 0, m
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert bool(imbalance.heads) == remedy.unimodal  # unimodal heads exactly for remedies that train with them
    state = imbalance.state_dict()  # round trip into a fresh coordinator of the same remedy
    fresh = Imbalance(mlp_model(), multiclass(), ImbalanceConfig(method=method, blend_window=1))  # type: ignore[arg-type]
    fresh.load_state_dict(state)
    for key, value in fresh.state_dict().items():
        torch.testing.assert_close(value, state[key], equal_nan=True)


@pytest.mark.parametrize("method", REMEDIES.names())
def test_every_remedy_is_deterministic(method: str) -> None:
    first, second = one_step(method)[2], one_step(method)[2]
    for m in first:
        torch.testing.assert_close(first[m], second[m])


def test_remedies_that_need_a_head_say_which_key_to_change() -> None:
    headless = type("Headless", (), {"num_outputs": 0, "name": "retrieval"})()
    for name in REMEDIES.names():
        check = REMEDIES.get(name).check_task  # type: ignore[attr-defined]
        if name == "none":
            check(headless, name)  # plain training needs no head
            continue
        with pytest.raises(ValueError, match=f"training.imbalance.method: '{name}'"):
            check(headless, name)


@pytest.mark.slow
def test_a_resumed_grad_blend_run_goes_on_blending_alike(data_dir: Path, tmp_path: Path) -> None:
    """The remedy's state (blending weights and their reference) travels in the training checkpoint."""
    import pandas as pd
    from test_trust_training import Interrupted, StopAtEpoch, config

    from polymodal.training.fit import train

    blend = {"imbalance": {"method": "grad_blend", "blend_window": 1}}
    train(config(data_dir, tmp_path / "straight", **blend))
    with pytest.raises(Interrupted):
        train(config(data_dir, tmp_path / "resumed", **blend), callbacks=[StopAtEpoch(2)])
    train(config(data_dir, tmp_path / "resumed", **blend), resume=True)

    def last_weights(run: str) -> list[float]:  # the weights blending used in the last epoch
        log = pd.read_csv(tmp_path / run / "logs" / "metrics.csv").filter(like="blend_weight_").dropna()
        return log.iloc[-1].tolist()

    assert last_weights("resumed") == last_weights("straight") != [0.25] * 4


def test_a_checkpoint_from_before_remedies_keeps_its_blending_weights() -> None:
    """Checkpoints written before remedies became strategies hold grad_blend's buffers as `imbalance.blend*`."""
    from types import SimpleNamespace

    from polymodal.training.module import PolymodalModule

    imbalance = Imbalance(mlp_model(), multiclass(), ImbalanceConfig(method="grad_blend", blend_window=1))
    own = {k: v for k, v in imbalance.state_dict(prefix="imbalance.").items() if k.startswith("imbalance.remedy.")}
    assert own
    old = {"imbalance." + k.removeprefix("imbalance.remedy."): v + 0.25 for k, v in own.items()}
    checkpoint = {"state_dict": {**old, "imbalance.gone": torch.zeros(1)}}
    PolymodalModule.on_load_checkpoint(SimpleNamespace(imbalance=imbalance), checkpoint)  # type: ignore[arg-type]
    state = checkpoint["state_dict"]
    assert "imbalance.gone" not in state and not set(old) & set(state)
    for key, value in own.items():
        torch.testing.assert_close(state[key], value + 0.25, equal_nan=True)
