"""Activation checkpointing of MANGO's blocks (``use_activation_checkpointing``): the same values and gradients in
float64 (ActNorm's first-batch initialisation inside a checkpointed block, parameters perturbed, the flow-only
likelihood's nested pass and the joint objective), less memory in a training step, and nothing changed outside
training (no gradient: no recomputation; the inverse untouched)."""

from __future__ import annotations

import copy

import pytest
import torch

from mango_lite.engine.cost import peak_memory_bytes
from mango_lite.flows import MultiscaleMango, block as block_module, perturb_parameters, use_activation_checkpointing
from mango_lite.models import ModelConfig, build_model

D64 = torch.float64


def _model(nll_to_encoders: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(task="segmentation", fusion="mango", in_channels=(3, 1), num_outputs=5, image_size=32, width=8,
                      blocks=1, scales=2, flow_nll_to_encoders=nll_to_encoders)
    return build_model(cfg).double().train()


def _batch():
    g = torch.Generator().manual_seed(3)
    return (torch.rand(2, 3, 32, 32, dtype=D64, generator=g), torch.rand(2, 1, 32, 32, dtype=D64, generator=g),
            torch.randint(0, 5, (2, 32, 32), generator=g))


def _loss_and_grads(m: torch.nn.Module, a, b, y) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(5)  # the flow's input noise: the same draw on both sides (and replayed by the recompute)
    m.zero_grad(set_to_none=True)
    loss, _ = m.loss(m(a, b), y)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("nll_to_encoders", [False, True])
def test_checkpointed_blocks_give_the_same_loss_and_gradients(nll_to_encoders):
    a, b, y = _batch()
    plain = _model(nll_to_encoders)
    checkpointed = copy.deepcopy(plain)
    blocks = use_activation_checkpointing(checkpointed)
    assert blocks and all(blk.checkpoint_forward for blk in blocks)
    for step in ("first batch: ActNorm initialises inside the block", "parameters perturbed"):
        l0, g0 = _loss_and_grads(plain, a, b, y)
        l1, g1 = _loss_and_grads(checkpointed, a, b, y)
        assert torch.equal(l0, l1), step
        assert g0.keys() == g1.keys() and any("flow" in n for n in g0)
        for n in g0:
            assert torch.allclose(g1[n], g0[n], atol=1e-12, rtol=1e-10), f"{step}: {n} {(g1[n] - g0[n]).abs().max():.3g}"
        perturb_parameters(plain, 0.2, torch.Generator().manual_seed(1))
        checkpointed.load_state_dict(plain.state_dict())
    assert not any(blk.checkpoint_forward for blk in use_activation_checkpointing(checkpointed, False))


def test_checkpointing_lowers_a_training_steps_peak_memory():
    torch.manual_seed(0)
    flow = MultiscaleMango(channels=4, size=16, scales=1, blocks=4).train()
    a, b = torch.rand(8, 4, 16, 16), torch.rand(8, 4, 16, 16)
    flow.encode((a, b))  # ActNorm's initialisation, outside the measured steps

    def step() -> None:
        flow.zero_grad(set_to_none=True)
        flow.encode((a, b)).log_prob.mean().backward()

    plain = peak_memory_bytes(step)
    use_activation_checkpointing(flow)
    checkpointed = peak_memory_bytes(step)
    # four blocks: the checkpointed step holds the blocks' inputs and one block's activations at a time
    assert checkpointed < 0.5 * plain, (checkpointed, plain)


def test_no_recomputation_without_gradients_and_the_inverse_is_untouched(monkeypatch):
    torch.manual_seed(0)
    flow = MultiscaleMango(channels=1, size=8, scales=2, blocks=1).double().eval()
    perturb_parameters(flow, 0.2, torch.Generator().manual_seed(0))
    a, b = (torch.rand(2, 1, 8, 8, dtype=D64, generator=torch.Generator().manual_seed(s)) for s in (1, 2))
    before = flow.encode((a, b))
    use_activation_checkpointing(flow)

    def refuse(*args, **kwargs):
        raise AssertionError("checkpoint called outside a training forward")

    monkeypatch.setattr(block_module, "checkpoint", refuse)
    with torch.no_grad():
        enc = flow.encode((a, b))
        latents, logdet = flow((a, b))
        (ra, rb), logdet_inv = flow.inverse(latents)
    assert torch.equal(enc.log_prob, before.log_prob)
    assert torch.allclose(ra, a, atol=1e-10) and torch.allclose(rb, b, atol=1e-10)
    assert torch.allclose(logdet_inv, -logdet, atol=1e-10)
    with pytest.raises(AssertionError, match="outside a training forward"):
        flow.encode((a, b))  # with gradients enabled the block does checkpoint


def test_a_run_with_the_flow_checkpointed_has_the_same_metrics(tmp_path):
    """``RunOptions(checkpoint_flow=True)`` (``train --checkpoint-flow``): the run's blocks are switched and its
    metrics equal a plain run's (the recomputed activations are the same operations on the same values)."""
    from mango_lite.presets import get_preset
    from mango_lite.training import RunOptions, RunSpec, train_task

    tiny = get_preset("quick").with_overrides(name="quick", image_size=16, n_train=8, n_val=4, epochs=1, batch_size=4,
                                              width=8, blocks=1, scales=1)
    switched: list[bool] = []

    def record(trainer) -> None:
        switched.extend(blk.checkpoint_forward for blk in trainer.model.modules() if isinstance(blk, block_module.MangoBlock))

    metrics = []
    for checkpoint_flow in (False, True):
        options = RunOptions(device="cpu", progress=False, verbose=False, cache_dir=tmp_path / "data",
                             checkpoint_flow=checkpoint_flow, after_fit=(record,))
        metrics.append(train_task(RunSpec("segmentation", "mango", tiny), tmp_path / str(checkpoint_flow),
                                  options=options).metrics)
    assert metrics[0] == metrics[1]
    assert switched and switched == [False] * (len(switched) // 2) + [True] * (len(switched) // 2)
