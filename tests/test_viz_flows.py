"""Figures of the flow notebooks: the conditioning panel of notebook 01 and the static-then-interactive helper."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402


@pytest.mark.parametrize("gamma,log_tau", [(0.1, 0.0), (0.9, -2.0), (-0.9, -2.0), (0.0, 0.0)])
def test_conditioning_panel_stays_under_varahs_bound(gamma, log_tau):
    from mango_lite.viz.flows import plot_conditioning

    fig, ax = plt.subplots()
    cond = plot_conditioning(gamma, log_tau, ax=ax)
    plt.close(fig)
    g = max(abs(gamma), 1e-6)  # gamma 0 is drawn with 1e-6
    assert 1.0 <= cond <= (1 + g) / (1 - g) * (1 + 1e-9)
    # the colour scale is centred at 0 (a signed matrix on a diverging map)
    lo, hi = ax.images[0].get_clim()
    assert lo == -hi


def test_conditioning_panel_rejects_a_gamma_outside_the_unit_interval():
    from mango_lite.viz.flows import plot_conditioning

    with pytest.raises(ValueError, match="-1 < gamma < 1"):
        plot_conditioning(1.0, 0.0)


def test_interact_with_static_draws_each_setting_then_the_widget(monkeypatch):
    import ipywidgets

    from mango_lite.notebook import interact_with_static

    calls, interacted = [], []
    monkeypatch.setattr(ipywidgets, "interact", lambda fn, **kw: interacted.append(kw))
    interact_with_static(lambda a, b=0: calls.append((a, b)), [dict(a=1), dict(a=2, b=3)], a=(0, 5))
    assert calls == [(1, 0), (2, 3)] and interacted == [{"a": (0, 5)}]


def test_plot_attention_centres_a_signed_matrix_and_keeps_viridis_otherwise():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from mango_lite.viz.flows import plot_attention

    signed = torch.eye(4) + torch.triu(torch.full((4, 4), -0.4), 1)
    ax = plot_attention(signed, plt.figure().gca())
    im = ax.get_images()[0]
    assert im.get_cmap().name == "RdBu_r" and im.get_clim() == (-1.0, 1.0)
    ax = plot_attention(torch.eye(4) + torch.triu(torch.full((4, 4), 0.3), 1), plt.figure().gca())
    assert ax.get_images()[0].get_cmap().name == "viridis"
    plt.close("all")
