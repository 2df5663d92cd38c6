"""The exercise checks grade without leaking: each rejects the stub and named wrong answers with a hint that
holds no expected value, and accepts the solution."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mango_lite import exercises as ex


def _message(excinfo) -> str:
    return str(excinfo.value)


# ------------------------------------------------------------------------------------------ generic
def test_check_number_names_mistakes_and_directions_never_the_value():
    with pytest.raises(ex.NotAnswered, match="no answer yet"):
        ex.check_number("9.9", None, 2.5)
    with pytest.raises(ex.WrongAnswer, match="as a number, got str"):
        ex.check_number("9.9", "2.5", 2.5)
    with pytest.raises(ex.WrongAnswer, match="slip") as e:
        ex.check_number("9.9", 0.4, 2.5, mistakes={0.4: "a slip"})
    assert "2.5" not in _message(e)
    with pytest.raises(ex.WrongAnswer, match="too large") as e:
        ex.check_number("9.9", 3.0, 2.5)
    assert "2.5" not in _message(e)
    ex.check_number("9.9", torch.tensor(2.5), 2.5)


def test_check_token_set_gives_counts_only(capsys):
    with pytest.raises(ex.NotAnswered):
        ex.check_token_set("9.9", set(), {1, 2})
    with pytest.raises(ex.WrongAnswer, match="1 of your tokens get no weight, and 1 token") as e:
        ex.check_token_set("9.9", {1, 7}, {1, 2})
    assert "2" not in _message(e).replace("9.9", "").replace("1 token", "")
    ex.check_token_set("9.9", [2, 1], {1, 2})
    assert capsys.readouterr().out.strip() == "Exercise 9.9: right."


def test_forbidding_blocks_general_inverses_and_restores_them():
    a = torch.eye(3, dtype=torch.float64) * 2
    with ex.forbidding("9.9", "use a triangular solve"):
        for call in (lambda: torch.linalg.inv(a), lambda: torch.inverse(a), lambda: a.inverse(),
                     lambda: torch.linalg.solve(a, a), lambda: torch.linalg.pinv(a)):
            with pytest.raises(ex.ForbiddenCall, match="use a triangular solve"):
                call()
        torch.linalg.solve_triangular(a, a, upper=True)  # allowed
    assert torch.equal(torch.linalg.inv(a), a / 4)


# ------------------------------------------------------------------------------------------ 1.1
def _solution_1_1(inverse: str = "triangular", gamma_scale: float = 1.0, logdet_factor: str = "d"):
    """The exercise's solution, with switches for the plausible mistakes."""
    def attention_from(x1, lay):
        q = torch.nn.functional.layer_norm(x1 @ lay.query.weight.T, (lay.qk_dim,), lay.query_norm.weight,
                                           lay.query_norm.bias)
        k = torch.nn.functional.layer_norm(x1 @ lay.key.weight.T, (lay.qk_dim,), lay.key_norm.weight)
        logits = q @ k.transpose(1, 2) / (lay.log_temperature.exp() * math.sqrt(lay.qk_dim))
        t = x1.shape[1]
        allowed = torch.ones(t, t, dtype=torch.bool).triu()
        s = torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
        return torch.eye(t, dtype=x1.dtype) + gamma_scale * lay.gamma * s

    def logdet_of(a, t, d):
        factor = {"d": d, "T": t}[logdet_factor]
        return factor * torch.log(torch.diagonal(a, dim1=1, dim2=2)).sum(1)

    def forward(x, lay):
        t, d = x.shape[1] // 2, x.shape[2]
        a = attention_from(x[:, :t], lay)
        return torch.cat([x[:, :t], a @ x[:, t:]], 1), logdet_of(a, t, d)

    def inv(y, lay):
        t, d = y.shape[1] // 2, y.shape[2]
        a = attention_from(y[:, :t], lay)
        x2 = (torch.linalg.solve_triangular(a, y[:, t:], upper=True) if inverse == "triangular"
              else torch.linalg.inv(a) @ y[:, t:])
        return torch.cat([y[:, :t], x2], 1), -logdet_of(a, t, d)

    return attention_from, forward, inv


def test_exercise_1_1_accepts_the_solution(capsys):
    ex.exercise_1_1(*_solution_1_1())
    assert "Exercise 1.1: right." in capsys.readouterr().out


def test_exercise_1_1_rejects_the_stub_and_a_general_inverse():
    def stub(*args):
        raise NotImplementedError

    with pytest.raises(ex.NotAnswered):
        ex.exercise_1_1(stub, stub, stub)
    with pytest.raises(ex.ForbiddenCall, match="torch.linalg.inv"):
        ex.exercise_1_1(*_solution_1_1(inverse="general"))


@pytest.mark.parametrize("mistake, hint", [(dict(gamma_scale=0.5), "diagonal differs"),
                                           (dict(logdet_factor="T"), "the log-det is not")])
def test_exercise_1_1_rejects_plausible_mistakes(mistake, hint):
    with pytest.raises(ex.WrongAnswer, match=hint):
        ex.exercise_1_1(*_solution_1_1(**mistake))


# ------------------------------------------------------------------------------------------ 1.2, 1.3
def test_exercise_1_2():
    with pytest.raises(ex.NotAnswered):
        ex.exercise_1_2(None)
    for wrong, hint in ((0.25, "other way round"), (256, "their ratio"), (8.0, "not L")):
        with pytest.raises(ex.WrongAnswer, match=hint) as e:
            ex.exercise_1_2(wrong)
        assert "4" not in _message(e).replace("1.2", "")
    ex.exercise_1_2(256 / 64)


def test_exercise_1_3():
    with pytest.raises(ex.NotAnswered):
        ex.exercise_1_3(None)
    for wrong in (0.9, 0.1):
        with pytest.raises(ex.WrongAnswer, match="(?i)solve"):
            ex.exercise_1_3(wrong)
    with pytest.raises(ex.WrongAnswer, match="too small"):
        ex.exercise_1_3(0.8)
    assert ex.exercise_1_3(9 / 11) <= 10 + 1e-9


# ------------------------------------------------------------------------------------------ 1.5, 1.6
def _multihead_logdet(factor: str = "per head"):
    def logdet(a, dim):
        per_channel = torch.log(torch.diagonal(a, dim1=-2, dim2=-1)).sum((-1, -2))
        return {"per head": dim // a.shape[1], "all channels": dim, "none": 1}[factor] * per_channel
    return logdet


def _not_written(*args):
    raise NotImplementedError


def test_exercise_1_5(capsys):
    with pytest.raises(ex.NotAnswered):
        ex.exercise_1_5(_not_written)
    with pytest.raises(ex.WrongAnswer, match="own group of channels, not all D"):
        ex.exercise_1_5(_multihead_logdet("all channels"))
    with pytest.raises(ex.WrongAnswer, match="count them"):
        ex.exercise_1_5(_multihead_logdet("none"))
    with pytest.raises(ex.WrongAnswer, match=r"shape \(B,\)"):
        ex.exercise_1_5(lambda a, dim: torch.log(torch.diagonal(a, dim1=-2, dim2=-1)))
    ex.exercise_1_5(_multihead_logdet())
    assert "Exercise 1.5: right." in capsys.readouterr().out


def _inverse_inf_norm(how: str = "solve"):
    def norm(a):
        if how == "inv":
            inv = torch.linalg.inv(a)
        else:
            inv = torch.linalg.solve_triangular(a, torch.eye(a.shape[-1], dtype=a.dtype).expand_as(a), upper=True)
        return inv.abs().sum(-2 if how == "columns" else -1).amax(-1)
    return norm


def test_exercise_1_6(capsys):
    with pytest.raises(ex.NotAnswered):
        ex.exercise_1_6(_not_written)
    with pytest.raises(ex.ForbiddenCall, match="solve_triangular"):
        ex.exercise_1_6(_inverse_inf_norm("inv"))
    with pytest.raises(ex.WrongAnswer, match="1-norm") as e:
        ex.exercise_1_6(_inverse_inf_norm("columns"))
    assert "5" not in _message(e).replace("1.6", "")  # 1 / (1 - 0.8) is nowhere in the hint
    with pytest.raises(ex.WrongAnswer, match="norm of A itself"):
        ex.exercise_1_6(lambda a: a.abs().sum(-1).amax(-1))
    worst = ex.exercise_1_6(_inverse_inf_norm())
    assert "Exercise 1.6: right." in capsys.readouterr().out
    assert 0.99 < worst <= 1 + 1e-9  # the bound holds and the last token's row attains it


# ------------------------------------------------------------------------------------------ 3.x
def test_exercise_3_1_and_3_2():
    with pytest.raises(ex.NotAnswered):
        ex.exercise_3_1(set())
    with pytest.raises(ex.WrongAnswer, match="all of X2"):
        ex.exercise_3_1({3, 5, 7})
    with pytest.raises(ex.WrongAnswer, match="non-zero diagonal"):
        ex.exercise_3_1({5, 7, 9, 11, 13, 15})
    ex.exercise_3_1({3, 5, 7, 9, 11, 13, 15})
    with pytest.raises(ex.WrongAnswer, match="upper triangle's answer"):
        ex.exercise_3_2({3, 5, 7, 9, 11, 13, 15})
    with pytest.raises(ex.WrongAnswer, match="get no weight"):
        ex.exercise_3_2({1, 3, 9})
    ex.exercise_3_2({1, 3})


def test_exercise_3_3():
    with pytest.raises(ex.NotAnswered):
        ex.exercise_3_3(None)
    with pytest.raises(ex.WrongAnswer, match="True or False, got int"):
        ex.exercise_3_3(1)
    with pytest.raises(ex.WrongAnswer, match="Follow B's token 5"):
        ex.exercise_3_3(False)
    ex.exercise_3_3(True)


# ------------------------------------------------------------------------------------------ 8.1
def _results():
    def models(**values):
        return {m: {k: v} for m, (k, v) in values.items()}

    return {"results": {
        "segmentation/nyudv2": {"task": "segmentation", "models": models(
            mango=("miou", 20.0), concat=("miou", 21.0), tokenfusion=("miou", 19.0), crossattn=("miou", 18.0),
            rgb=("miou", 25.0))},
        "translation/shade_texture_to_rgb": {"task": "translation", "models": models(
            mango=("mae_x10", 1.0), concat=("mae_x10", 1.2), tokenfusion=("mae_x10", 0.9), crossattn=("mae_x10", 1.1))},
    }}


def test_exercise_8_1():
    res = _results()
    assert ex.mango_places(res) == {"segmentation/nyudv2": 2, "translation/shade_texture_to_rgb": 2}
    with pytest.raises(ex.NotAnswered):
        ex.exercise_8_1({}, res)
    with pytest.raises(ex.WrongAnswer, match="among every trained model"):  # rgb's 25 counted
        ex.exercise_8_1({"segmentation/nyudv2": 3, "translation/shade_texture_to_rgb": 2}, res)
    with pytest.raises(ex.WrongAnswer, match="lower headline value is better") as e:
        ex.exercise_8_1({"segmentation/nyudv2": 2, "translation/shade_texture_to_rgb": 3}, res)
    assert "2" not in str(e.value)
    with pytest.raises(ex.WrongAnswer, match="1 group"):
        ex.exercise_8_1({"segmentation/nyudv2": 2}, res)
    ex.exercise_8_1({"segmentation/nyudv2": 2, "translation/shade_texture_to_rgb": 2}, res)


# ------------------------------------------------------------------------------------------ 3.4
def _imca_split(x, tokens):
    a, b = x[:, :tokens], x[:, tokens:]
    return torch.cat([a[:, 0::2], b[:, 0::2]], 1), torch.cat([a[:, 1::2], b[:, 1::2]], 1)


def _imca_merge(x1, x2, tokens):
    half = tokens // 2
    out = x1.new_empty(x1.shape[0], 2 * tokens, x1.shape[2])
    out[:, 0:tokens:2], out[:, tokens::2] = x1[:, :half], x1[:, half:]
    out[:, 1:tokens:2], out[:, tokens + 1::2] = x2[:, :half], x2[:, half:]
    return out


def test_exercise_3_4(capsys):
    with pytest.raises(ex.NotAnswered):
        ex.exercise_3_4(_not_written, _not_written)
    # B's even tokens before A's: the right tokens in the wrong order
    with pytest.raises(ex.WrongAnswer, match="another order"):
        ex.exercise_3_4(lambda x, t: tuple(torch.cat(h.chunk(2, 1)[::-1], 1) for h in _imca_split(x, t)), _imca_merge)
    # halves by modality (that is MMCA)
    with pytest.raises(ex.WrongAnswer, match="even-indexed tokens"):
        ex.exercise_3_4(lambda x, t: (x[:, :t], x[:, t:]), _imca_merge)
    # a merge that is not the inverse
    with pytest.raises(ex.WrongAnswer, match="does not undo"):
        ex.exercise_3_4(_imca_split, lambda x1, x2, t: torch.cat([x1, x2], 1))
    ex.exercise_3_4(_imca_split, _imca_merge)
    assert "Exercise 3.4: right." in capsys.readouterr().out



# ------------------------------------------------------------------------------------------ 2.x
def _autograd_logdet(keep: str = "logabsdet"):
    def logdet(module, x):
        out = []
        for xi in x:
            def f(v, xi=xi):
                return module(v.view(1, *xi.shape))[0].reshape(-1)
            sign, logabs = torch.linalg.slogdet(torch.autograd.functional.jacobian(f, xi.reshape(-1)))
            out.append({"logabsdet": logabs, "sign": sign, "negated": -logabs}[keep])
        return torch.stack(out)
    return logdet


class _HalfScale(torch.nn.Module):
    def forward(self, x):
        return 0.5 * x, x.new_zeros(x.shape[0])

    def inverse(self, z):
        return 2.0 * z, z.new_zeros(z.shape[0])


def test_exercise_2_1(capsys):
    with pytest.raises(ex.NotAnswered):
        ex.exercise_2_1(lambda m, x: None)
    with pytest.raises(ex.WrongAnswer, match="kept the sign"):
        ex.exercise_2_1(_autograd_logdet("sign"))
    with pytest.raises(ex.WrongAnswer, match="sign is flipped"):
        ex.exercise_2_1(_autograd_logdet("negated"))
    ex.exercise_2_1(_autograd_logdet())
    assert "Exercise 2.1: right." in capsys.readouterr().out


def test_exercise_2_2(capsys):
    good = 32 * math.log(0.5)
    with pytest.raises(ex.NotAnswered):
        ex.exercise_2_2(None, _autograd_logdet(), _HalfScale())
    with pytest.raises(ex.NotAnswered, match="Exercise 2.1"):
        ex.exercise_2_2(good, lambda m, x: None, _HalfScale())
    for wrong, hint in ((math.log(0.5), "one coordinate"), (-good, "sign"), (16.0, "sum of logarithms")):
        with pytest.raises(ex.WrongAnswer, match=hint) as e:
            ex.exercise_2_2(wrong, _autograd_logdet(), _HalfScale())
        assert "22.18" not in _message(e)
    ex.exercise_2_2(good, _autograd_logdet(), _HalfScale())
    assert "Exercise 2.2: right." in capsys.readouterr().out


def test_exercise_2_3(capsys):
    with pytest.raises(ex.NotAnswered):
        ex.exercise_2_3(None)
    for wrong, hint in ((16, "D / 2 that must equal T"), (8, "not T over h")):
        with pytest.raises(ex.WrongAnswer, match=hint) as e:
            ex.exercise_2_3(wrong)
        assert "32" not in _message(e)
    ex.exercise_2_3(32)
    assert "Exercise 2.3: right." in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ 0.1
def _xor_films(n=600, seed=0):
    rng = np.random.default_rng(seed)
    p, w = rng.integers(0, 2, n), rng.integers(0, 2, n)
    return p, w, (p ^ w).astype(bool), n // 2


def test_exercise_0_1(capsys):
    p, w, y, n_train = _xor_films()
    with pytest.raises(ex.NotAnswered):
        ex.exercise_0_1(_not_written, p, w, y, n_train)
    with pytest.raises(ex.WrongAnswer, match="weighted sum of a poster term and a plot term"):
        ex.exercise_0_1(lambda a, b: np.stack([a, b, a + b], 1), p, w, y, n_train)
    with pytest.raises(ex.WrongAnswer, match="weighted sum"):
        ex.exercise_0_1(lambda a, b: np.stack([a, 2 * b - 1], 1), p, w, y, n_train)
    ex.exercise_0_1(lambda a, b: np.stack([a, b, a * b], 1), p, w, y, n_train)
    ex.exercise_0_1(lambda a, b: (a != b).astype(float)[:, None], p, w, y, n_train)  # the XOR itself is fine too
    assert capsys.readouterr().out.count("Exercise 0.1: right.") == 2


# ------------------------------------------------------------------------------------------ 4.1, 4.2
def test_exercise_4_1():
    log_prob = torch.tensor([-3000.0, -2500.0, 1200.0])
    dims = 2 * 16 * 16
    with pytest.raises(ex.NotAnswered):
        ex.exercise_4_1(None, log_prob, dims)
    with pytest.raises(ex.WrongAnswer, match="shape"):
        ex.exercise_4_1(torch.tensor(1.0), log_prob, dims)
    mistakes = {"nats": -log_prob / dims, "negative cost": log_prob / (dims * math.log(2.0)),
                "both modalities": -log_prob / (dims / 2 * math.log(2.0)), "base-2": -log_prob / (dims * math.log(10.0))}
    for hint, wrong in mistakes.items():
        with pytest.raises(ex.WrongAnswer, match=hint) as e:
            ex.exercise_4_1(wrong, log_prob, dims)
        assert "8.4" not in _message(e)  # the expected first value, -(-3000) / (512 ln 2) = 8.45, is never shown
    with pytest.raises(ex.WrongAnswer, match="too large"):
        ex.exercise_4_1(-log_prob / (dims * math.log(2.0)) + 1.0, log_prob, dims)
    ex.exercise_4_1(-log_prob / (dims * math.log(2.0)), log_prob, dims)


def test_exercise_4_2():
    def stub(continuous):
        raise NotImplementedError

    with pytest.raises(ex.NotAnswered):
        ex.exercise_4_2(stub)
    for wrong, hint in ((lambda c: c - 8.0, "larger, not smaller"), (lambda c: c + math.log2(255), "not log2"),
                        (lambda c: c + math.log(256), "not ln"), (lambda c: c * 8.0, "does not scale")):
        with pytest.raises(ex.WrongAnswer, match=hint):
            ex.exercise_4_2(wrong)
    with pytest.raises(ex.WrongAnswer, match="shape"):
        ex.exercise_4_2(lambda c: float(c.mean() + 8))
    ex.exercise_4_2(lambda c: c + math.log2(256))


# ------------------------------------------------------------------------------------------ 4b.1, 4b.2
def test_exercise_4b_1():
    def stub(cols, depth, focal, baseline):
        raise NotImplementedError

    with pytest.raises(ex.NotAnswered):
        ex.exercise_4b_1(stub)
    slips = ((lambda c, z, f, b: c - f * b / z, "left"), (lambda c, z, f, b: c + f * b * z, "falls with depth"),
             (lambda c, z, f, b: c + b / z, "focal length"), (lambda c, z, f, b: c * f * b / z, "not scaled"))
    for wrong, hint in slips:
        with pytest.raises(ex.WrongAnswer, match=hint):
            ex.exercise_4b_1(wrong)
    with pytest.raises(ex.WrongAnswer, match="shape"):
        ex.exercise_4b_1(lambda c, z, f, b: c[0])
    ex.exercise_4b_1(lambda c, z, f, b: c + f * b / z)


def test_exercise_4b_2():
    from mango_lite.metrics.paired import paired_difference

    a, b = [20.1, 19.4, 21.0, 20.6], [19.5, 19.2, 20.1, 20.4]
    d = paired_difference(a, b)
    right = (d.mean, d.low, d.high)
    with pytest.raises(ex.NotAnswered):
        ex.exercise_4b_2(None, None, None, a, b)
    diffs = np.subtract(a, b)
    sd, n = diffs.std(ddof=1), len(diffs)
    half = d.high - d.mean
    slips = {"other way round": (-d.mean, -d.high, -d.low), "degrees of freedom": (d.mean, d.mean - 1.96 * sd / 2,
                                                                                    d.mean + 1.96 * sd / 2),
             "n - 1": (d.mean, d.mean - half * diffs.std(ddof=0) / sd, d.mean + half * diffs.std(ddof=0) / sd),
             "sqrt\\(n\\)": (d.mean, d.mean - half * math.sqrt(n), d.mean + half * math.sqrt(n))}
    for hint, wrong in slips.items():
        with pytest.raises(ex.WrongAnswer, match=hint) as e:
            ex.exercise_4b_2(*wrong, a, b)
        assert f"{d.low:.2f}" not in _message(e) and f"{d.high:.2f}" not in _message(e)
    ex.exercise_4b_2(*right, a, b)


# ------------------------------------------------------------------------------------------ notebook 05
def test_exercise_5_1(capsys):
    conf = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]], dtype=np.int64)  # class 2 absent from truth and prediction
    want = 100 * (5 / 8 + 3 / 6) / 2
    with pytest.raises(ex.NotAnswered):
        ex.exercise_5_1(None, conf)
    with pytest.raises(ex.WrongAnswer, match="fraction"):
        ex.exercise_5_1(want / 100, conf)
    with pytest.raises(ex.WrongAnswer, match="absent"):
        ex.exercise_5_1(100 * (5 / 8 + 3 / 6) / 3, conf)
    with pytest.raises(ex.WrongAnswer, match="mean accuracy") as e:
        ex.exercise_5_1(100 * (5 / 6 + 3 / 5) / 2, conf)
    assert f"{want:.1f}" not in _message(e) and f"{want:.2f}" not in _message(e)
    with pytest.raises(ex.WrongAnswer, match="pixel accuracy"):
        ex.exercise_5_1(100 * 8 / 11, conf)
    with pytest.raises(ex.WrongAnswer, match="too small"):
        ex.exercise_5_1(10.0, conf)
    ex.exercise_5_1(want, conf)
    assert "right" in capsys.readouterr().out


def test_exercise_5_2(capsys):
    from mango_lite.flows import InvertibleCrossAttention
    from mango_lite.metrics import segmentation_scores
    from mango_lite.models import ModelConfig, build_model
    from mango_lite.viz.segmentation import predict_segmentation

    k, size = 5, 32
    g = torch.Generator().manual_seed(0)
    items = [{"rgb": torch.randn(3, size, size, generator=g), "depth": torch.randn(1, size, size, generator=g),
              "label": torch.randint(0, k, (size, size), generator=g), "name": f"{i:06d}"} for i in range(4)]
    torch.manual_seed(0)
    model = build_model(ModelConfig(task="segmentation", fusion="mango", in_channels=(3, 1), num_outputs=k,
                                    image_size=size, width=8, blocks=1, scales=2)).eval()
    gates = [m.gate for m in model.modules() if isinstance(m, InvertibleCrossAttention)]
    with torch.no_grad():  # a trained-looking model: gates away from their start, so gamma = 0 changes predictions
        for i, gate in enumerate(gates):
            gate.fill_(3.0 if i % 2 else -3.0)

    def miou(net):
        p = predict_segmentation({"m": net}, items, batch_size=2)
        return segmentation_scores(p.preds["m"], p.label, k)["miou"]

    trained = miou(model)
    import copy
    off = copy.deepcopy(model)
    with torch.no_grad():
        for m in off.modules():
            if isinstance(m, InvertibleCrossAttention):
                m.gate.zero_()
    want = miou(off)
    assert abs(want - trained) > 1e-6, "the test needs gamma = 0 to change the mIoU"
    kw = {"trained_miou": trained, "batch_size": 2, "num_classes": k}
    with pytest.raises(ex.NotAnswered):
        ex.exercise_5_2(None, model, items, **kw)
    with pytest.raises(ex.WrongAnswer, match="trained model's mIoU"):
        ex.exercise_5_2(trained, model, items, **kw)
    ex.exercise_5_2(want, model, items, **kw)
    assert "right" in capsys.readouterr().out
    with torch.no_grad():  # the gates zeroed on the trained model itself
        for gate in gates:
            gate.zero_()
    with pytest.raises(ex.WrongAnswer, match="copy"):
        ex.exercise_5_2(want, model, items, **kw)
    with pytest.raises(ex.WrongAnswer, match="no ICA layer"):
        ex.exercise_5_2(want, torch.nn.Linear(2, 2), items, **kw)


# ------------------------------------------------------------------------------------------ notebooks 06, 07
def test_exercise_6_1(capsys):
    by_pair = {"p": {"mango": {"mae_x10": 1.0}, "concat": {"mae_x10": 1.2}, "tokenfusion": {"mae_x10": 1.1},
                     "crossattn": {"mae_x10": 1.3}, "rgb": {"mae_x10": 1.5}, "edge": {"mae_x10": 1.8}},
               "q": {"mango": {"mae_x10": 2.0}, "concat": {"mae_x10": 1.9}, "tokenfusion": {"mae_x10": 2.4},
                     "crossattn": {"mae_x10": 2.1}, "rgb": {"mae_x10": 1.95}, "shade": {"mae_x10": 2.5}}}
    want = {"p": 1.5 - 1.0, "q": 1.95 - 1.9}
    with pytest.raises(ex.NotAnswered):
        ex.exercise_6_1({}, by_pair)
    with pytest.raises(ex.WrongAnswer, match="sign is reversed") as e:
        ex.exercise_6_1({k: -v for k, v in want.items()}, by_pair)
    assert "0.5" not in _message(e)
    with pytest.raises(ex.WrongAnswer, match="worse single input"):
        ex.exercise_6_1({"p": 1.8 - 1.0, "q": 2.5 - 1.9}, by_pair)
    with pytest.raises(ex.WrongAnswer, match="worst fused model"):
        ex.exercise_6_1({"p": 1.5 - 1.3, "q": 1.95 - 2.4}, by_pair)
    with pytest.raises(ex.WrongAnswer, match="1 pair"):
        ex.exercise_6_1({"p": 0.5}, by_pair)
    with pytest.raises(ex.WrongAnswer, match="1 of 2 gains differ"):
        ex.exercise_6_1({"p": 0.5, "q": 0.3}, by_pair)
    ex.exercise_6_1(want, by_pair)
    assert "right" in capsys.readouterr().out


def _genre_predictions():
    rng = np.random.default_rng(0)
    labels = (rng.random((60, 6)) < 0.3).astype(np.int64)
    labels[:, 5] = 0  # a genre never present: its F1 is 0/0 unless predicted
    probs = np.clip(0.55 * labels + 0.6 * rng.random((60, 6)), 0, 1)
    probs[:, 5] = 0.1
    return labels, probs


def test_exercise_7_1(capsys):
    from mango_lite.metrics import multilabel_f1

    labels, probs = _genre_predictions()
    f1 = multilabel_f1(labels, probs)
    with pytest.raises(ex.NotAnswered):
        ex.exercise_7_1(None, labels, probs)
    with pytest.raises(ex.WrongAnswer, match="micro-F1"):
        ex.exercise_7_1(f1["micro"], labels, probs)
    with pytest.raises(ex.WrongAnswer, match="fraction"):
        ex.exercise_7_1(f1["macro"] / 100, labels, probs)
    with pytest.raises(ex.WrongAnswer, match="count as 0") as e:
        ex.exercise_7_1(f1["macro"] * 6 / 5, labels, probs)  # the mean over the 5 genres with a defined F1
    assert f"{f1['macro']:.1f}" not in _message(e)
    ex.exercise_7_1(f1["macro"], labels, probs)
    assert "right" in capsys.readouterr().out


def test_exercise_7_2(capsys):
    from mango_lite.metrics import multilabel_f1

    labels, probs = _genre_predictions()
    grid = np.linspace(0.05, 0.95, 19)
    micro = [multilabel_f1(labels, probs, threshold=t)["micro"] for t in grid]
    t_best, t_worst = grid[int(np.argmax(micro))], grid[int(np.argmin(micro))]
    with pytest.raises(ex.NotAnswered):
        ex.exercise_7_2(None, None, labels, probs, grid)
    with pytest.raises(ex.WrongAnswer, match="not one of the grid"):
        ex.exercise_7_2(0.33, max(micro), labels, probs, grid)
    with pytest.raises(ex.WrongAnswer, match="lowest micro-F1"):
        ex.exercise_7_2(t_worst, min(micro), labels, probs, grid)
    # one common genre scored low and four rare ones scored high: micro-F1 (pooled, the common genre weighs
    # most) wants a low threshold, macro-F1 (one vote per genre) a higher one
    common = np.zeros((60, 5), np.int64)
    common_p = np.full((60, 5), 0.1)
    common[:50, 0], common_p[:50, 0] = 1, 0.3
    for g in range(1, 5):
        common_p[:, g] = 0.4
        common[g * 5:g * 5 + 3, g], common_p[g * 5:g * 5 + 3, g] = 1, 0.9
    c_micro = [multilabel_f1(common, common_p, threshold=t)["micro"] for t in grid]
    c_macro = [multilabel_f1(common, common_p, threshold=t)["macro"] for t in grid]
    assert c_micro[int(np.argmax(c_macro))] < max(c_micro) - 1
    with pytest.raises(ex.WrongAnswer, match="macro-F1"):
        ex.exercise_7_2(grid[int(np.argmax(c_macro))], max(c_macro), common, common_p, grid)
    with pytest.raises(ex.WrongAnswer, match="too small"):
        ex.exercise_7_2(t_best, max(micro) - 1, labels, probs, grid)
    ex.exercise_7_2(t_best, max(micro), labels, probs, grid)
    assert "right" in capsys.readouterr().out


def _paired_bootstrap(slip: str = "", draw: str = "integers"):
    """Exercise 7.3's solution, with switches for the plausible slips (``slip``) and for other valid ways of
    drawing the resamples (``draw``)."""
    def paired_bootstrap(a, b, n_boot=2000, level=0.95, seed=0):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        n = len(a)
        rng = np.random.default_rng(None if slip == "unseeded" else seed)
        if draw == "choice":
            idx = rng.choice(n, size=(n_boot, n))
        elif draw == "torch":
            idx = torch.randint(0, n, (n_boot, n), generator=torch.Generator().manual_seed(seed)).numpy()
        else:
            idx = rng.integers(0, n, size=(n_boot, n))
        if slip == "without replacement":
            idx = np.stack([rng.permutation(n) for _ in range(n_boot)])
        means = a[idx].mean(1) - b[idx].mean(1)
        if slip == "unpaired":
            means = a[idx].mean(1) - b[rng.integers(0, n, size=(n_boot, n))].mean(1)
        if slip == "reversed":
            means = -means
        if slip == "standard error":
            return means.mean() - means.std(), means.mean() + means.std()
        tail = {"": (1 - level) / 2, "tail": 1 - level, "ignores level": 0.025}.get(slip, (1 - level) / 2)
        return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))
    return paired_bootstrap


def test_exercise_7_3(capsys):
    def stub(a, b, n_boot=2000, level=0.95, seed=0):
        raise NotImplementedError("exercise: your code here")

    with pytest.raises(ex.NotAnswered, match="paired_bootstrap"):
        ex.exercise_7_3(stub)
    with pytest.raises(ex.NotAnswered):
        ex.exercise_7_3(lambda a, b, n_boot=2000, level=0.95, seed=0: None)
    for slip, hint in (("unpaired", "same indices for a and b"), ("reversed", "b - a"),
                       ("standard error", "one standard error"), ("tail", "each tail"),
                       ("without replacement", "with replacement"), ("ignores level", "ignores level"),
                       ("unseeded", "default_rng\\(seed\\)")):
        with pytest.raises(ex.WrongAnswer, match=hint) as e:
            ex.exercise_7_3(_paired_bootstrap(slip))
        assert "0." not in _message(e).replace("level=0.8", ""), (slip, _message(e))  # no endpoint given away
    with pytest.raises(ex.WrongAnswer, match="two numbers"):
        ex.exercise_7_3(lambda a, b, n_boot=2000, level=0.95, seed=0: 0.1)
    capsys.readouterr()
    for draw in ("integers", "choice", "torch"):  # any generator convention passes
        ex.exercise_7_3(_paired_bootstrap(draw=draw))
        assert capsys.readouterr().out.startswith("Exercise 7.3: right.")
