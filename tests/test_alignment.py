"""The alignment toy of notebook 03: ICA trained by likelihood alone finds the token of A that carries B's
content, against the gamma = 0 control."""

from __future__ import annotations

import pytest
import torch

from mango_lite.training.alignment import (
    aligned_columns,
    aligned_share,
    alignment_layer,
    alignment_study,
    shifted_pair,
)


def test_shifted_pair_is_a_rolled_copy_and_refuses_odd_shifts():
    x = shifted_pair(3, 8, 2, shift=2, noise=0.0, generator=torch.Generator().manual_seed(0))
    a, b = x[:, :8], x[:, 8:]
    assert torch.equal(b[:, 2:], a[:, :-2]) and torch.equal(b[:, :2], a[:, -2:])
    with pytest.raises(ValueError, match="shift must be even"):
        shifted_pair(1, 8, 2, shift=3)


def test_aligned_columns_and_share_on_a_hand_built_attention():
    # T = 8: X2 = A's odd tokens a1 a3 a5 a7, then B's b1 b3 b5 b7; shift 2 -> b(2k+1) matches a(2k-1)
    assert aligned_columns(8, 2) == [3, 0, 1, 2]
    s = torch.zeros(8, 8)
    for k, j in enumerate(aligned_columns(8, 2)):
        s[4 + k, j] = 0.6
        s[4 + k, (j + 1) % 4] = 0.2
        s[4 + k, 4 + k] = 0.2
    assert torch.allclose(aligned_share(s, 2), torch.full((4,), 0.75))


def test_the_control_layer_is_the_identity_on_x2():
    layer = alignment_layer(8, 2, attention=False)
    x = shifted_pair(2, 8, 2, shift=2)
    z, logdet = layer(x)
    assert torch.equal(z, x) and torch.equal(logdet, torch.zeros(2))


def test_the_attention_learns_the_shift_and_beats_the_control():
    study = alignment_study(seeds=(0,), tokens=16, dim=4, shift=4, steps=300)
    (row,) = study["rows"]
    assert row["rows_aligned"] == row["rows"] == 8
    assert row["aligned_share"] > 4 * study["uniform_share"]
    assert row["val_bpd"] < row["control_bpd"]
