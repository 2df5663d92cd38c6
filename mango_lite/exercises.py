"""Checks for the notebooks' exercises that grade an answer without giving the expected one away.

A check cell of a notebook calls one function here with the student's answer. The function computes the
expected value itself (from the library, never a typed number), prints one line when the answer is right,
and otherwise raises :class:`NotAnswered` (the stub is still there) or :class:`WrongAnswer` with a hint: a
named mistake gets its own hint ("that is the factor T, not T / d"), any other answer a direction or a
count, never the expected value. Both errors are AssertionErrors, so a notebook run stops there and a test
sees a failure.

* generic checks: :func:`check_number`, :func:`check_token_set`, :func:`check_truth`, and
  :func:`forbidding` (a context in which a general matrix inverse raises);
* one function per coded exercise (``exercise_1_1`` ...), each building what it needs to compute the
  expected answer.

It serves the notebooks and sits with them at the top of the package's layers (``tests/test_layers.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from .flows.perturb import perturb_parameters

__all__ = [
    "NotAnswered", "WrongAnswer", "ForbiddenCall", "check_number", "check_token_set", "check_truth", "forbidding",
    "exercise_0_1", "exercise_1_1", "exercise_1_2", "exercise_1_3", "exercise_1_5", "exercise_1_6", "exercise_2_1",
    "exercise_2_2", "exercise_2_3", "exercise_3_1", "exercise_3_2",
    "exercise_3_3", "exercise_3_4", "exercise_4_1", "exercise_4_2", "exercise_4b_1", "exercise_4b_2", "exercise_5_1",
    "exercise_5_2", "exercise_6_1",
    "exercise_7_1",
    "exercise_7_2", "exercise_7_3", "exercise_8_1",
]


class NotAnswered(AssertionError):
    """The exercise's answer is still the stub (``None``, an empty set, or a function that is not written)."""


class WrongAnswer(AssertionError):
    """The answer is not the expected one; the message holds a hint, never the expected value."""


class ForbiddenCall(AssertionError):
    """The answer called a function the exercise rules out (e.g. a general matrix inverse)."""


def _passed(exercise: str, note: str = "") -> None:
    print(f"Exercise {exercise}: right." + (f" {note}" if note else ""))


# ------------------------------------------------------------------------------------------ generic
def check_number(exercise: str, answer: Any, expected: float, *, name: str = "the answer", rel: float = 1e-6,
                 mistakes: Mapping[float, str] | None = None) -> None:
    """``answer`` equals ``expected`` to relative tolerance ``rel``. ``mistakes``: values a plausible slip gives,
    each with its hint. An answer that is neither gets "too large" / "too small"."""
    if answer is None:
        raise NotAnswered(f"Exercise {exercise}: no answer yet: set {name} to a number.")
    if isinstance(answer, torch.Tensor) and answer.numel() == 1:
        answer = answer.item()
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise WrongAnswer(f"Exercise {exercise}: expected {name} as a number, got {type(answer).__name__}.")
    value = float(answer)
    if not math.isfinite(value):
        raise WrongAnswer(f"Exercise {exercise}: {name} is {value}, not a finite number.")
    if math.isclose(value, expected, rel_tol=rel, abs_tol=rel * 1e-3):
        _passed(exercise)
        return
    for wrong, hint in (mistakes or {}).items():
        if math.isclose(value, wrong, rel_tol=rel, abs_tol=rel * 1e-3):
            raise WrongAnswer(f"Exercise {exercise}: not yet. {hint}")
    direction = "too large" if value > expected else "too small"
    raise WrongAnswer(f"Exercise {exercise}: not yet: {name} is {direction}.")


def check_token_set(exercise: str, answer: Any, expected: Iterable[int], *, name: str = "the set",
                    mistakes: Mapping[frozenset[int], str] | None = None) -> None:
    """``answer`` (a set of token indices) equals ``expected``. A wrong set gets the counts of tokens that should
    not be in it and of those missing, not which ones."""
    want = frozenset(int(j) for j in expected)
    if answer is None or (isinstance(answer, (set, frozenset, list, tuple)) and not answer):
        raise NotAnswered(f"Exercise {exercise}: no answer yet: fill in {name}.")
    try:
        got = frozenset(int(j) for j in answer)
    except (TypeError, ValueError):
        raise WrongAnswer(f"Exercise {exercise}: expected {name} as a set of token indices, got "
                          f"{type(answer).__name__}.") from None
    if got == want:
        _passed(exercise)
        return
    if got in (mistakes or {}):
        raise WrongAnswer(f"Exercise {exercise}: not yet. {(mistakes or {})[got]}")
    extra, missing = len(got - want), len(want - got)
    raise WrongAnswer(f"Exercise {exercise}: not yet: {extra} of your tokens get no weight, and {missing} "
                      f"token(s) with a weight are missing.")


def check_truth(exercise: str, answer: Any, expected: bool, *, name: str = "the answer", hint: str = "") -> None:
    """``answer`` is the bool ``expected``; a wrong one gets ``hint``."""
    if answer is None:
        raise NotAnswered(f"Exercise {exercise}: no answer yet: set {name} to True or False.")
    if not isinstance(answer, bool):
        raise WrongAnswer(f"Exercise {exercise}: expected {name} as True or False, got {type(answer).__name__}.")
    if answer is expected:
        _passed(exercise)
        return
    raise WrongAnswer(f"Exercise {exercise}: not yet. {hint}".rstrip())


#: what a general inverse is called by; a triangular solve (torch.linalg.solve_triangular) stays allowed
_INVERSES = (("torch.linalg", "inv"), ("torch.linalg", "inv_ex"), ("torch.linalg", "pinv"), ("torch.linalg", "solve"),
             ("torch.linalg", "solve_ex"), ("torch", "inverse"), ("torch", "pinverse"), ("torch.Tensor", "inverse"),
             ("torch.Tensor", "pinverse"))


@contextmanager
def forbidding(exercise: str, reason: str) -> Iterator[None]:
    """Inside the block every general matrix inverse or solve of torch raises :class:`ForbiddenCall` naming
    ``reason``; restored on exit."""
    import importlib

    saved = []
    try:
        for owner_name, attr in _INVERSES:
            owner = torch.Tensor if owner_name == "torch.Tensor" else importlib.import_module(owner_name)
            saved.append((owner, attr, getattr(owner, attr)))

            def refuse(*args: Any, _name: str = f"{owner_name}.{attr}", **kwargs: Any) -> Any:
                raise ForbiddenCall(f"Exercise {exercise}: your code called {_name}; {reason}")

            setattr(owner, attr, refuse)
        yield
    finally:
        for owner, attr, original in saved:
            setattr(owner, attr, original)


# ------------------------------------------------------------------------------------------ notebook 00
def _thriller_f1(features: Any, label: Any, n_train: int) -> float:
    """F1 (%) on the films after ``n_train`` of a linear probe (viz.data.genre_probe) fitted on the first ones."""
    import numpy as np

    from .viz.data import genre_probe

    x = np.asarray(features, dtype=np.float64).reshape(len(label), -1)
    y = np.asarray(label, dtype=np.float64).reshape(-1, 1)
    pred = genre_probe([x[:n_train]], y[:n_train], [x[n_train:]])[:, 0] > 0.5
    truth = y[n_train:, 0] > 0.5
    tp = float((pred & truth).sum())
    return 200.0 * tp / max(1.0, float(pred.sum() + truth.sum()))


def exercise_0_1(interaction_features: Callable[[Any, Any], Any], poster_cue: Any, plot_word: Any, label: Any,
                 n_train: int) -> None:
    """The student's features of the two cue indicators: a linear probe on them must get the XOR genre about
    as well as on (poster, plot, poster x plot), which the check builds itself; features that are sums of
    per-modality terms get a hint saying why they cannot."""
    import numpy as np

    a = np.asarray(poster_cue, dtype=np.float64)
    b = np.asarray(plot_word, dtype=np.float64)
    try:
        feats = interaction_features(a.copy(), b.copy())
    except NotImplementedError:
        raise _not_written("0.1", "interaction_features(poster_cue, plot_word)") from None
    if feats is None:
        raise _not_written("0.1", "interaction_features(poster_cue, plot_word)")
    feats = np.asarray(feats, dtype=np.float64).reshape(len(a), -1)
    if not np.isfinite(feats).all():
        raise WrongAnswer("Exercise 0.1: your features hold NaN or infinite values.")
    reference = _thriller_f1(np.stack([a, b, a * b], 1), label, n_train)
    mine = _thriller_f1(feats, label, n_train)
    if mine >= reference - 2.0:
        _passed("0.1", "A linear probe on your features separates the XOR genre.")
        return
    base = np.stack([np.ones_like(a), a, b], 1)
    additive = np.linalg.matrix_rank(np.hstack([base, feats])) == np.linalg.matrix_rank(base)
    raise WrongAnswer("Exercise 0.1: not yet. " + (
        "Every feature you built is a weighted sum of a poster term and a plot term: a linear probe on them "
        "is still a sum of per-modality evidence. Which feature is 1 only when both cues are present?"
        if additive else "The probe on your features does not separate the genre: give it the cues and their "
                         "interaction."))


# ------------------------------------------------------------------------------------------ notebook 01
def _perturbed_mmca_layer(dim: int, tokens: int, seed: int) -> Any:
    from .flows import ICA

    torch.manual_seed(seed)
    layer = ICA(dim=dim, tokens=tokens, partition="mmca", variant=0).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))  # away from the identity start: a wrong gamma or tau shows
    return layer


def exercise_1_1(attention_from: Callable[..., torch.Tensor], forward: Callable[..., tuple[torch.Tensor, torch.Tensor]],
                 inverse: Callable[..., tuple[torch.Tensor, torch.Tensor]], dim: int = 4, tokens: int = 6,
                 seed: int = 11) -> None:
    """The student's one-head MMCA layer (A, forward with log-det, inverse) against ``mango_lite.ICA`` with
    perturbed parameters, in float64, with every general inverse of torch forbidden."""
    from .flows import reference

    layer = _perturbed_mmca_layer(dim, tokens, seed)
    x = torch.randn(3, 2 * tokens, dim, dtype=torch.float64)
    try:
        with forbidding("1.1", "the inverse of a triangular A is a triangular solve (torch.linalg.solve_triangular)"):
            a = attention_from(x[:, :tokens], layer)
            y, logdet = forward(x, layer)
            x_back, logdet_inv = inverse(y, layer)
    except NotImplementedError:
        raise NotAnswered("Exercise 1.1: no answer yet: write attention_from, my_ica_forward and my_ica_inverse.") from None
    y_lib, logdet_lib = layer(x)
    a_lib = reference.attention_matrix(layer, x)[:, 0]
    if tuple(a.shape) != tuple(a_lib.shape):
        raise WrongAnswer(f"Exercise 1.1: A should have shape (B, T, T) = {tuple(a_lib.shape)}, got {tuple(a.shape)}.")
    if not torch.allclose(a, a_lib, atol=1e-10):
        upper = torch.allclose(a.tril(-1), torch.zeros_like(a))
        diag = torch.allclose(torch.diagonal(a, dim1=1, dim2=2), torch.diagonal(a_lib, dim1=1, dim2=2), atol=1e-10)
        hint = ("A should be upper triangular: token i attends to tokens j >= i." if not upper else
                "A's diagonal differs: check gamma and the identity." if not diag else
                "A differs off the diagonal: check the query/key normalisation, the temperature tau and sqrt(d_qk).")
        raise WrongAnswer(f"Exercise 1.1: not yet. {hint}")
    if not torch.allclose(y, y_lib, atol=1e-10):
        raise WrongAnswer("Exercise 1.1: A is right, the forward map is not: Y1 = X1 and Y2 = A X2.")
    if not torch.allclose(logdet, logdet_lib, atol=1e-10):
        ratio = (logdet / logdet_lib).mean().item()
        hint = (f"your log-det is {ratio:.3g} times the layer's: each of the d channels of X2 is multiplied by A."
                if math.isfinite(ratio) else "the log-det is the sum of log A_ii over the diagonal, times d.")
        raise WrongAnswer(f"Exercise 1.1: the forward map is right, the log-det is not: {hint}")
    if not torch.allclose(x_back, x, atol=1e-10):
        raise WrongAnswer("Exercise 1.1: the inverse does not return x: solve A X2 = Y2 with A built from Y1 = X1.")
    if not torch.allclose(logdet_inv, -logdet_lib, atol=1e-10):
        raise WrongAnswer("Exercise 1.1: the inverse returns x, but its log-det should be minus the forward one.")
    _passed("1.1", "Your layer matches mango_lite.ICA to round-off, with its parameters away from their start.")


def published_logdet_ratio(dim: int = 64, tokens: int = 256, seed: int = 0) -> float:
    """The published log-det over the exact one for one IMCA layer of ``dim`` channels and ``tokens`` tokens
    per modality, measured in float64."""
    from .flows import ICA, reference

    torch.manual_seed(seed)
    layer = ICA(dim=dim, tokens=tokens, partition="imca", gamma=None).double()
    # one sample: with torch 2.13's CPU build, a *batched* slogdet of 200+ x 200+ matrices after an explicit
    # torch.set_num_threads(2) stops in MKL (DLASWP "parameter 6 incorrect"); a batch of one does not
    x = torch.randn(1, 2 * tokens, dim, dtype=torch.float64)
    with torch.no_grad():
        return float((reference.published_logdet(layer, x) / layer(x)[1]).mean())


def exercise_1_2(predicted_ratio: Any, dim: int = 64, tokens: int = 256) -> None:
    """The predicted factor between the published and the exact log-det, against the measured one."""
    measured = published_logdet_ratio(dim, tokens)
    check_number("1.2", predicted_ratio, measured, name="predicted_ratio", rel=1e-6, mistakes={
        dim / tokens: "That is the exact log-det over the published one; the question asks the other way round.",
        float(tokens): "The published code multiplies by T where the exact log-det has d: the factor is their ratio.",
        2.0 * tokens / dim: "The published factor is L / 2 = T (L = 2T tokens in all), not L.",
    })


def exercise_1_3(gamma_max: Any, cond_limit: float = 10.0, draws: int = 64, seed: int = 0) -> float:
    """The largest |gamma| whose bound (1 + |gamma|) / (1 - |gamma|) is ``cond_limit``: checked against the bound
    solved numerically, then the worst measured cond_inf(A) of sharp random attention at the student's gamma
    is returned (it must respect the limit)."""
    from .flows import ICA, reference

    lo, hi = 0.0, 1.0  # the bound rises from 1 to infinity on [0, 1): bisection
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if (1 + mid) / (1 - mid) <= cond_limit else (lo, mid)
    check_number("1.3", gamma_max, lo, name="gamma_max", rel=1e-9, mistakes={
        (cond_limit - 1) / cond_limit: "Solve (1 + g) / (1 - g) = 10 for g; 1 - 1/10 solves a different equation.",
        1 / cond_limit: "That is 1 / 10; solve (1 + g) / (1 - g) = 10 for g.",
    })
    torch.manual_seed(seed)
    layer = ICA(dim=4, tokens=32, partition="imca", gamma=float(gamma_max)).double()
    with torch.no_grad():
        layer.log_temperature.fill_(-2.0)  # sharp attention: the worst case the bound covers
    a = reference.attention_matrix(layer, torch.randn(draws, 64, 4, dtype=torch.float64))
    worst = float(torch.linalg.cond(a.detach(), p=float("inf")).max())
    if worst > cond_limit + 1e-9:
        raise WrongAnswer(f"Exercise 1.3: the bound is violated ({worst:.3f} > {cond_limit}): report this as a bug.")
    return worst


def _not_written(exercise: str, what: str) -> NotAnswered:
    return NotAnswered(f"Exercise {exercise}: no answer yet: write {what}.")


def _one_per_row(exercise: str, got: Any, want: torch.Tensor, what: str, written: str) -> torch.Tensor:
    """The student's per-sample (or per-matrix) answer: ``None`` is unanswered; anything but a tensor of
    ``want``'s shape is named with the shape expected."""
    if got is None:
        raise _not_written(exercise, written)
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise WrongAnswer(f"Exercise {exercise}: expected one {what}, shape (B,) = {tuple(want.shape)}, got {shape}.")
    return got


def exercise_1_5(multihead_logdet: Callable[[torch.Tensor, int], torch.Tensor], dim: int = 8, tokens: int = 6,
                 heads: int = 2, seed: int = 5) -> None:
    """The student's log-det of a multi-head ICA layer from its matrices A_h (B, H, T, T) and the channel count
    D, against the layer's own, with perturbed parameters (so every head has its own gamma and attention)."""
    from .flows import ICA, reference

    torch.manual_seed(seed)
    layer = ICA(dim=dim, tokens=tokens, partition="imca", heads=heads).double()
    perturb_parameters(layer, 0.3)
    x = torch.randn(3, 2 * tokens, dim, dtype=torch.float64)
    with torch.no_grad():
        a = reference.attention_matrix(layer, x)
        want = layer(x)[1]
    try:
        got = multihead_logdet(a.clone(), dim)
    except NotImplementedError:
        raise _not_written("1.5", "multihead_logdet(a, dim)") from None
    got = _one_per_row("1.5", got, want, "log-det per sample", "multihead_logdet(a, dim)")
    if torch.allclose(got, want, atol=1e-9):
        _passed("1.5", "Each head's matrix scales only its own D/H channels.")
        return
    ratio = float((got / want).mean())
    if math.isclose(ratio, heads, rel_tol=1e-6):
        raise WrongAnswer("Exercise 1.5: not yet. Each head's A_h mixes only its own group of channels, not all D.")
    if math.isclose(ratio, heads / dim, rel_tol=1e-6):
        raise WrongAnswer("Exercise 1.5: not yet. Every channel of a head's group is mixed by that head's A_h: "
                          "count them.")
    raise WrongAnswer("Exercise 1.5: not yet: write log|det J| as a sum over heads, over the diagonal of each A_h "
                      "and over the channels that A_h mixes.")


def exercise_1_6(inverse_inf_norm: Callable[[torch.Tensor], torch.Tensor], gamma: float = 0.8, tokens: int = 16,
                 draws: int = 32, seed: int = 3) -> float:
    """The student's ||A^-1||_inf (one value per matrix of a (B, T, T) batch), computed without a general
    inverse, against the checker's; then the largest measured ||A^-1||_inf over sharp random attention at
    ``gamma`` is returned, relative to the bound 1 / (1 - |gamma|) (it must not exceed 1)."""
    from .flows import ICA, reference

    torch.manual_seed(seed)
    layer = ICA(dim=4, tokens=tokens, partition="imca", gamma=-abs(gamma)).double()  # negative: the hard side
    with torch.no_grad():
        layer.log_temperature.fill_(-2.0)
        a = reference.attention_matrix(layer, torch.randn(draws, 2 * tokens, 4, dtype=torch.float64))[:, 0]
    want = torch.linalg.inv(a).abs().sum(-1).amax(-1)
    try:
        with forbidding("1.6", "A is triangular: solve A X = I with torch.linalg.solve_triangular"):
            got = inverse_inf_norm(a.clone())
    except NotImplementedError:
        raise _not_written("1.6", "inverse_inf_norm(a)") from None
    got = _one_per_row("1.6", got, want, "norm per matrix", "inverse_inf_norm(a)")
    if not torch.allclose(got, want, rtol=1e-9):
        inv = torch.linalg.inv(a)
        if torch.allclose(got, inv.abs().sum(-2).amax(-1), rtol=1e-9):
            raise WrongAnswer("Exercise 1.6: not yet. That is the 1-norm (largest column sum); the infinity norm "
                              "takes the largest row sum of |A^-1|.")
        if torch.allclose(got, a.abs().sum(-1).amax(-1), rtol=1e-9):
            raise WrongAnswer("Exercise 1.6: not yet. That is the norm of A itself; the question is about A^-1.")
        raise WrongAnswer("Exercise 1.6: not yet: solve A X = I for X = A^-1 (triangular), then take the largest "
                          "row sum of |X|.")
    g = float(layer.gamma.detach().abs().max())  # the layer's gamma (stored in float32 before .double())
    worst = float(want.max() * (1 - g))
    if worst > 1 + 1e-9:  # the last token attends to itself alone: its row attains the bound
        raise WrongAnswer(f"Exercise 1.6: the bound is violated ({worst:.4f} > 1): report this as a bug.")
    _passed("1.6")
    return worst


# ------------------------------------------------------------------------------------------ notebook 02
def _perturbed_coupling(seed: int = 2) -> tuple[Any, torch.Tensor]:
    """A coupling layer in float64 with its zero-initialised output moved (a zero log-det would test
    nothing), and inputs of 2 samples x 8 tokens x 4 channels."""
    from .flows import Coupling

    torch.manual_seed(seed)
    layer = Coupling(4, hidden=8).double()
    perturb_parameters(layer, 0.3)
    return layer.eval(), torch.randn(2, 8, 4, dtype=torch.float64)


def exercise_2_1(autograd_logdet: Callable[[Any, torch.Tensor], torch.Tensor]) -> None:
    """The student's per-sample log|det| of the autograd Jacobian against a perturbed coupling layer's own."""
    layer, x = _perturbed_coupling()
    with torch.no_grad():
        want = layer(x)[1]
    try:
        got = autograd_logdet(layer, x)
    except NotImplementedError:
        raise _not_written("2.1", "autograd_logdet(module, x)") from None
    got = _one_per_row("2.1", got, want, "value per sample", "autograd_logdet(module, x)").detach().to(want.dtype)
    if torch.allclose(got, want, atol=1e-9):
        _passed("2.1", "Your check agrees with the layer's log-det, with its parameters away from their start.")
        return
    if torch.allclose(got, -want, atol=1e-9):
        raise WrongAnswer("Exercise 2.1: not yet: the sign is flipped. The forward map's Jacobian, data -> latent.")
    if torch.allclose(got.abs(), torch.ones_like(got)):
        raise WrongAnswer("Exercise 2.1: not yet: slogdet returns (sign, log|det|); you kept the sign.")
    raise WrongAnswer("Exercise 2.1: not yet: take the Jacobian of one sample's flattened output with respect to "
                      "its flattened input, then slogdet's log|det|, sample by sample.")


def exercise_2_2(predicted_half_logdet: Any, autograd_logdet: Callable[[Any, torch.Tensor], torch.Tensor],
                 module: Any, shape: tuple[int, int] = (8, 4)) -> None:
    """The predicted log-det of x -> x / 2 for one sample of ``shape``: checked against the student's
    autograd_logdet on ``module`` (which must find it) and shown to differ from what ``module`` reports."""
    if predicted_half_logdet is None:
        raise NotAnswered("Exercise 2.2: no answer yet: set predicted_half_logdet to a number.")
    x = torch.randn(2, *shape, dtype=torch.float64)
    try:
        found = autograd_logdet(module, x)
    except NotImplementedError:
        found = None
    if found is None:
        raise NotAnswered("Exercise 2.2: this check uses your autograd_logdet: write it first (Exercise 2.1).")
    found = found.detach()
    n = shape[0] * shape[1]
    check_number("2.2", predicted_half_logdet, float(found[0]), name="predicted_half_logdet", rel=1e-9, mistakes={
        math.log(0.5): "That is one coordinate's; every coordinate of the sample is halved.",
        -float(found[0]): "The sign: halving shrinks volume, so log|det| is negative.",
        n * 0.5: "The Jacobian is diagonal with entries 1/2: its log|det| is a sum of logarithms.",
    })
    reported = module(x)[1]
    if torch.allclose(reported, found.to(reported.dtype)):
        raise WrongAnswer("Exercise 2.2: the module reports the right log-det: it is not the buggy HalfScale.")
    print("  ... and the module's own log-det is wrong, although its round trip is exact.")


def exercise_2_3(d_exact: Any, tokens: int = 16, heads: int = 2) -> None:
    """The channel count D (``heads`` heads) at which the published log-det factor T equals the exact D / h:
    found by building layers and comparing their log-dets (never typed)."""
    from .flows import ICA, reference

    match = None
    for dim in range(heads, 8 * tokens + 1, heads):
        torch.manual_seed(0)
        layer = ICA(dim=dim, tokens=tokens, partition="imca", heads=heads, gamma=None).double()
        x = torch.randn(1, 2 * tokens, dim, dtype=torch.float64)
        with torch.no_grad():
            if torch.allclose(reference.published_logdet(layer, x), layer(x)[1], atol=1e-9):
                match = dim
                break
    assert match is not None, "Exercise 2.3: no channel count makes the published factor right: report this as a bug."
    check_number("2.3", d_exact, float(match), name="d_exact", rel=1e-9, mistakes={
        float(tokens): "With two heads each head mixes D / 2 channels: it is D / 2 that must equal T.",
        float(tokens) / heads: "D / h must equal T, so D is T times h, not T over h.",
    })


# ------------------------------------------------------------------------------------------ notebook 03
def _inputs_of(token: int, tokens: int, triangle: str) -> frozenset[int]:
    """The input tokens with a non-zero weight in row ``token`` of an IMCA (variant 0) layer's mixing matrix."""
    from .flows import ICA

    torch.manual_seed(0)
    layer = ICA(dim=4, tokens=tokens, partition="imca", variant=0, gamma=0.9, triangle=triangle)
    with torch.no_grad():
        row = layer.mixing_matrix(torch.randn(1, 2 * tokens, 4))[0, 0, token]
    return frozenset(int(j) for j in torch.nonzero(row.abs() > 1e-9).flatten())


def exercise_3_1(feeds_a3: Any, tokens: int = 8) -> None:
    """Inputs of A's output token 3 in one IMCA layer (variant 0, upper triangle), read off its mixing matrix."""
    want = _inputs_of(3, tokens, "upper")
    check_token_set("3.1", feeds_a3, want, name="feeds_a3", mistakes={
        frozenset(j for j in want if j < tokens): "A's token 3 sits in X2 with B's odd tokens; the triangle runs "
                                                  "over all of X2, not over A's half only.",
        want - {3}: "A = I + gamma S has a non-zero diagonal: every token of X2 keeps a weight on itself.",
    })


def exercise_3_2(feeds_a3_lower: Any, tokens: int = 8) -> None:
    """The same with the lower triangle (token i attends to j <= i)."""
    check_token_set("3.2", feeds_a3_lower, _inputs_of(3, tokens, "lower"), name="feeds_a3_lower", mistakes={
        _inputs_of(3, tokens, "upper"): "That is the upper triangle's answer (exercise 3.1); the lower one looks "
                                        "the other way along X2.",
    })


def exercise_3_3(a3_depends_on_b5: Any, tokens: int = 8) -> None:
    """Does A's token 3 depend on B's token 5 after one MANGO block? From the block's autograd Jacobian."""
    from .flows import MangoBlock

    torch.manual_seed(0)
    x = torch.randn(1, 2 * tokens, 4, dtype=torch.float64)
    block = MangoBlock(dim=4, tokens=tokens).double()
    with torch.no_grad():
        block.train()
        block(x)  # ActNorm's data-dependent initialisation
        block.eval()
    jac = torch.autograd.functional.jacobian(lambda v: block(v)[0], x)[0, 3, :, 0, tokens + 5, :]
    check_truth("3.3", a3_depends_on_b5, bool(jac.abs().max() > 1e-12), name="a3_depends_on_b5",
                hint="Follow B's token 5 through the eight layers: through the values A X2 and through the "
                     "attention weights, which are computed from X1.")


def exercise_3_4(my_partition: Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]],
                 my_merge: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor], dim: int = 4, tokens: int = 6,
                 seed: int = 4) -> None:
    """The student's IMCA split (variant 0) and merge: the same X1 / X2 as the library's partition, an exact
    inverse of each other, and, put into an ICA layer in place of the library's, a layer that passes the
    library's float64 checks (round trip, log-det cancellation, log-det = slogdet of the autograd Jacobian)
    with perturbed parameters."""
    from .flows import ICA, reference
    from .flows.partition import Partition

    torch.manual_seed(seed)
    x = torch.randn(2, 2 * tokens, dim, dtype=torch.float64)
    try:
        x1, x2 = my_partition(x.clone(), tokens)
        back = my_merge(x1, x2, tokens)
    except NotImplementedError:
        raise _not_written("3.4", "my_partition and my_merge") from None
    if x1 is None or x2 is None or back is None:
        raise _not_written("3.4", "my_partition and my_merge")
    layer = ICA(dim=dim, tokens=tokens, partition="imca", variant=0).double()
    want1, want2, _ = layer.partition.partition(x)
    if tuple(x1.shape) != tuple(want1.shape) or tuple(x2.shape) != tuple(want2.shape):
        raise WrongAnswer(f"Exercise 3.4: X1 and X2 should each be (B, T, D) = {tuple(want1.shape)}, got "
                          f"{tuple(x1.shape)} and {tuple(x2.shape)}.")
    if not (torch.equal(x1, want1) and torch.equal(x2, want2)):
        same_sets = torch.equal(x1.sort(1).values, want1.sort(1).values)
        raise WrongAnswer("Exercise 3.4: not yet. " + (
            "X1 holds the right tokens in another order: A's even tokens first, then B's."
            if same_sets else "X1 should hold the even-indexed tokens of A and of B, X2 the odd ones."))
    if not torch.equal(back, x):
        raise WrongAnswer("Exercise 3.4: the split is right, the merge does not undo it: put every token back "
                          "where it came from.")

    class StudentIMCA(Partition):
        name = "imca"

        def partition(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            p1, p2 = my_partition(v, self.tokens)
            return p1, p2, v.new_zeros(v.shape[0])

        def merge(self, p1: torch.Tensor, p2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            merged = my_merge(p1, p2, self.tokens)
            return merged, merged.new_zeros(merged.shape[0])

        def x1_positions(self) -> torch.Tensor:
            return layer.partition.x1_positions()

    layer.partition = StudentIMCA(tokens, dim)
    perturb_parameters(layer, 0.3)
    errors = reference.verify_invertible(layer, x, finite_differences=False)
    if max(errors["roundtrip"], errors["cancellation"], errors["autograd"]) > 1e-9:
        raise WrongAnswer(f"Exercise 3.4: the layer with your partition fails a check: {errors}.")
    _passed("3.4", "An ICA layer with your partition passes the float64 checks.")


# ------------------------------------------------------------------------------------------ notebook 05
def _per_sample(exercise: str, got: Any, want: torch.Tensor, name: str, mistakes: Mapping[str, torch.Tensor]) -> None:
    """``got`` equals ``want`` sample by sample (float tolerance); a named slip gets its hint, anything else a
    direction, never the expected values."""
    got = _one_per_row(exercise, got, want, "value per sample", name).detach().to(want.dtype).cpu()
    want = want.detach().cpu()
    if torch.allclose(got, want, rtol=1e-5, atol=1e-5):
        _passed(exercise)
        return
    for hint, wrong in mistakes.items():
        if torch.allclose(got, wrong.detach().cpu().to(want.dtype), rtol=1e-5, atol=1e-5):
            raise WrongAnswer(f"Exercise {exercise}: not yet. {hint}")
    direction = "too large" if float((got - want).mean()) > 0 else "too small"
    raise WrongAnswer(f"Exercise {exercise}: not yet: {name} is {direction} on average.")


def exercise_4_1(my_bpd: Any, log_prob: torch.Tensor, dims: int) -> None:
    """Bits per dimension from a per-sample log-likelihood in nats over ``dims`` dimensions (both modalities)."""
    want = -log_prob / (dims * math.log(2.0))
    _per_sample("4.1", my_bpd, want, "my_bpd", {
        "That is nats per dimension: one nat is 1/ln 2 bits.": -log_prob / dims,
        "The log-likelihood is a negative cost: bits/dim is minus log p.": log_prob / (dims * math.log(2.0)),
        "The pair has the pixels of both modalities: 2·H·W dimensions.": -log_prob / (dims / 2 * math.log(2.0)),
        "Bits are base-2 logarithms, not base 10.": -log_prob / (dims * math.log(10.0)),
    })


def exercise_4_2(discrete_bpd: Callable[[torch.Tensor], Any], levels: int = 256) -> None:
    """The discrete bits/dim of ``levels``-level data from the continuous one, on values of its own."""
    continuous = torch.linspace(-5.0, 3.0, 9, dtype=torch.float64)
    try:
        got = discrete_bpd(continuous.clone())
    except NotImplementedError:
        raise NotAnswered("Exercise 4.2: no answer yet: write discrete_bpd.") from None
    want = continuous + math.log2(levels)
    _per_sample("4.2", got, want, "discrete_bpd(continuous)", {
        "A bin of width 1/256 holds about p/256 of the probability: the discrete cost is larger, not smaller.":
            continuous - math.log2(levels),
        "256 levels, 256 bins: log2(256), not log2(255).": continuous + math.log2(levels - 1),
        "Bits per dimension: the constant is log2(256), not ln(256).": continuous + math.log(levels),
        "The bin width adds a constant; it does not scale the density.": continuous * math.log2(levels),
    })


def exercise_4b_1(first_view_column: Callable[..., Any], focal: float = 55.4, baseline: float = 0.2,
                  seed: int = 0) -> None:
    """The colour camera's column of a point the displaced camera sees at column ``cols`` and z-depth ``depth``:
    ``cols + focal * baseline / depth`` (rectified stereo, the second camera ``baseline`` to the right), on
    columns and depths of its own."""
    import numpy as np

    rng = np.random.default_rng(seed)
    cols = np.tile(np.arange(64, dtype=np.float64), (8, 1))
    depth = rng.uniform(0.6, 5.0, cols.shape)
    try:
        got = first_view_column(cols.copy(), depth.copy(), focal, baseline)
    except NotImplementedError:
        raise NotAnswered("Exercise 4b.1: no answer yet: write first_view_column.") from None
    want = cols + focal * baseline / depth
    slips = {
        "The colour camera is to the left of the displaced one: a point moves right, not left, in its image.":
            cols - focal * baseline / depth,
        "Disparity falls with depth (far points move less): f·b/z, not f·b·z.": cols + focal * baseline * depth,
        "Disparity is in pixels: the baseline in metres needs the focal length in pixels.": cols + baseline / depth,
        "The column moves by the disparity; it is not scaled by it.": cols * focal * baseline / depth,
    }
    _per_sample("4b.1", None if got is None else torch.as_tensor(np.asarray(got, dtype=np.float64)),
                torch.as_tensor(want), "first_view_column(cols, depth, focal, baseline)",
                {hint: torch.as_tensor(v) for hint, v in slips.items()})


def exercise_4b_2(mean: Any, low: Any, high: Any, a: Sequence[float], b: Sequence[float]) -> None:
    """The mean of the per-seed differences a - b and its 95 % t interval (n - 1 degrees of freedom)."""
    import statistics

    from .metrics.paired import t_quantile, unpaired_half_width

    if mean is None or low is None or high is None:
        raise NotAnswered("Exercise 4b.2: no answer yet: set mean, low and high.")
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    m, sd = statistics.fmean(d), statistics.stdev(d)
    half = t_quantile(0.975, n - 1) * sd / math.sqrt(n)
    got = torch.tensor([float(mean), float(low), float(high)], dtype=torch.float64)
    want = torch.tensor([m, m - half, m + half], dtype=torch.float64)
    z_half = 1.959963984540054 * sd / math.sqrt(n)
    pop_half = t_quantile(0.975, n - 1) * statistics.pstdev(d) / math.sqrt(n)
    unpaired = unpaired_half_width(a, b)
    _per_sample("4b.2", got, want, "(mean, low, high)", {
        "mango - mango-noattn, not the other way round.": torch.tensor([-m, -m - half, -m + half], dtype=torch.float64),
        f"With {n} seeds the interval needs the t quantile with {n - 1} degrees of freedom, not the normal 1.96.":
            torch.tensor([m, m - z_half, m + z_half], dtype=torch.float64),
        "The sample standard deviation divides by n - 1 (ddof=1).":
            torch.tensor([m, m - pop_half, m + pop_half], dtype=torch.float64),
        "The interval of a mean shrinks with the square root of n: divide the sd by sqrt(n).":
            torch.tensor([m, m - half * math.sqrt(n), m + half * math.sqrt(n)], dtype=torch.float64),
        "That is the unpaired interval of the two means: pair the seeds and take the spread of the differences.":
            torch.tensor([m, m - unpaired, m + unpaired], dtype=torch.float64),
    })


def exercise_5_1(my_miou: Any, confusion: Any) -> None:
    """mIoU (percent) from a confusion matrix (rows: truth, columns: prediction), classes absent from both
    left out of the mean, as :func:`mango_lite.metrics.segmentation_scores` computes it."""
    import numpy as np

    conf = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    iou = tp[union > 0] / union[union > 0]
    want = 100 * float(iou.mean())
    rows = conf.sum(1)
    mistakes = {
        want / 100: "that is a fraction; the engine reports percent.",
        100 * float((tp / np.maximum(union, 1)).mean()): "classes absent from both prediction and truth (0/0) "
        "count as 0 in that mean; leave them out.",
        100 * float((tp[rows > 0] / rows[rows > 0]).mean()): "that is TP / (TP + FN), the mean accuracy: the "
        "union also holds the false positives.",
        100 * float(tp.sum() / conf.sum()): "that is the pixel accuracy: one ratio per class, then the mean.",
    }
    named = {k: v for k, v in mistakes.items() if abs(k - want) > 1e-9 * max(1.0, abs(want))}  # a slip that happens to be right
    check_number("5.1", my_miou, want, name="my_miou", mistakes=named)


def exercise_5_2(miou_without_attention: Any, model: torch.nn.Module, dataset: Any, *, trained_miou: float,
                 batch_size: int = 16, num_classes: int = 40) -> None:
    """The held-out mIoU of a copy of the trained MANGO ``model`` with every ICA gate set to 0. Computes it
    itself (a copy, gates zeroed, every item of ``dataset``); ``trained_miou``, the model's own mIoU, names
    the answer of a copy that was never changed. Also catches gates zeroed on the trained model itself."""
    import copy

    from .flows import InvertibleCrossAttention
    from .metrics import segmentation_scores
    from .viz.segmentation import predict_segmentation

    gates = [m.gate for m in model.modules() if isinstance(m, InvertibleCrossAttention)]
    if not gates:
        raise WrongAnswer("Exercise 5.2: the model given to the check has no ICA layer: pass the trained MANGO.")
    if miou_without_attention is None:
        raise NotAnswered("Exercise 5.2: no answer yet: set miou_without_attention to a number.")
    if all(bool((g == 0).all()) for g in gates):
        raise WrongAnswer("Exercise 5.2: the trained model's own gates are 0 now: change a copy "
                          "(copy.deepcopy), so that the trained model stays as it was.")
    off = copy.deepcopy(model)
    with torch.no_grad():
        for layer in off.modules():
            if isinstance(layer, InvertibleCrossAttention):
                layer.gate.zero_()
    preds = predict_segmentation({"off": off}, dataset, batch_size=batch_size)
    want = float(segmentation_scores(preds.preds["off"], preds.label, num_classes)["miou"])
    mistakes = {float(trained_miou): "that is the trained model's mIoU: the copy's gates were not set to 0 "
                                     "before it was evaluated."} if abs(float(trained_miou) - want) > 1e-9 else None
    check_number("5.2", miou_without_attention, want, name="miou_without_attention", rel=1e-6, mistakes=mistakes)


# ------------------------------------------------------------------------------------------ notebook 06
def _gains(by_pair: Mapping[str, Mapping[str, Mapping[str, float]]], fused: Iterable[str],
           unimodal_pick: Callable[[Iterable[float]], float] = min,
           fused_pick: Callable[[Iterable[float]], float] = min) -> dict[str, float]:
    fused = set(fused)
    return {pair: unimodal_pick(v["mae_x10"] for m, v in ms.items() if m not in fused)
            - fused_pick(v["mae_x10"] for m, v in ms.items() if m in fused) for pair, ms in by_pair.items()}


def exercise_6_1(fusion_gain: Any, by_pair: Mapping[str, Mapping[str, Mapping[str, float]]]) -> None:
    """Per pair: the better unimodal model's MAE×10 minus the best fused model's (positive = fusing helps)."""
    from .training.tasks import FUSION_MODELS

    if not fusion_gain:
        raise NotAnswered("Exercise 6.1: no answer yet: fill in fusion_gain (pair -> gain).")
    if not isinstance(fusion_gain, Mapping):
        raise WrongAnswer(f"Exercise 6.1: expected fusion_gain as a dict (pair -> gain), got {type(fusion_gain).__name__}.")
    want = _gains(by_pair, FUSION_MODELS)
    missing = sorted(set(want) - set(fusion_gain))
    if missing:
        raise WrongAnswer(f"Exercise 6.1: not yet: {len(missing)} pair(s) have no gain, e.g. {missing[0]!r}.")

    def same(answer: Mapping[str, Any], ref: Mapping[str, float]) -> bool:
        return all(math.isclose(float(answer[k]), ref[k], rel_tol=1e-9, abs_tol=1e-12) for k in ref)

    if same(fusion_gain, want):
        _passed("6.1")
        return
    if same(fusion_gain, {k: -v for k, v in want.items()}):
        raise WrongAnswer("Exercise 6.1: not yet: the sign is reversed; MAE is lower for the better model, so the "
                          "gain is the unimodal MAE minus the fused one.")
    if same(fusion_gain, _gains(by_pair, FUSION_MODELS, unimodal_pick=max)):
        raise WrongAnswer("Exercise 6.1: not yet: that compares with the worse single input; take the better one "
                          "(the lower MAE).")
    if same(fusion_gain, _gains(by_pair, FUSION_MODELS, fused_pick=max)):
        raise WrongAnswer("Exercise 6.1: not yet: that takes the worst fused model; take the best one (the lower MAE).")
    wrong = [k for k in want if not math.isclose(float(fusion_gain[k]), want[k], rel_tol=1e-9, abs_tol=1e-12)]
    raise WrongAnswer(f"Exercise 6.1: not yet: {len(wrong)} of {len(want)} gains differ, e.g. for {wrong[0]!r}.")


# ------------------------------------------------------------------------------------------ notebook 07
def exercise_7_1(my_macro_f1: Any, labels: Any, probs: Any) -> None:
    """Macro-F1 (percent) of ``probs`` thresholded at 0.5 against ``labels`` (N x K), 0/0 counted as 0."""
    import numpy as np

    from .metrics import multilabel_f1

    f1 = multilabel_f1(labels, probs, threshold=0.5)
    truth, hard = np.asarray(labels).astype(bool), np.asarray(probs) > 0.5
    tp = (hard & truth).sum(0)
    denom = 2 * tp + (hard & ~truth).sum(0) + (~hard & truth).sum(0)
    per_genre = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)
    defined = per_genre[np.isfinite(per_genre)]
    mistakes = {
        f1["micro"]: "that is the micro-F1 (counts pooled over genres); macro averages one F1 per genre.",
        f1["macro"] / 100: "that is a fraction; the engine reports percent.",
    }
    if defined.size and defined.size < per_genre.size:
        mistakes[100 * float(defined.mean())] = ("genres with 0/0 are left out of that mean; they count as 0 "
                                                 "(zero_division=0).")
    check_number("7.1", my_macro_f1, f1["macro"], name="my_macro_f1",
                 mistakes={k: v for k, v in mistakes.items() if abs(k - f1["macro"]) > 1e-9 * max(1.0, f1["macro"])})


def exercise_7_2(best_t: Any, best_micro: Any, labels: Any, probs: Any, grid: Any) -> None:
    """The threshold of ``grid`` that maximises micro-F1 of ``probs`` against ``labels``, and that micro-F1."""
    import numpy as np

    from .metrics import multilabel_f1

    if best_t is None or best_micro is None:
        raise NotAnswered("Exercise 7.2: no answer yet: set best_t and best_micro.")
    grid = [float(t) for t in grid]
    micro = [multilabel_f1(labels, probs, threshold=t)["micro"] for t in grid]
    macro = [multilabel_f1(labels, probs, threshold=t)["macro"] for t in grid]
    want_t, want_f1 = grid[int(np.argmax(micro))], float(max(micro))
    t = float(best_t)
    if not any(math.isclose(t, g, abs_tol=1e-9) for g in grid):
        raise WrongAnswer("Exercise 7.2: not yet: best_t is not one of the grid's thresholds.")
    if math.isclose(t, grid[int(np.argmax(macro))], abs_tol=1e-9) and not math.isclose(t, want_t, abs_tol=1e-9):
        raise WrongAnswer("Exercise 7.2: not yet: that threshold maximises macro-F1; the question asks for micro-F1.")
    if math.isclose(t, grid[int(np.argmin(micro))], abs_tol=1e-9) and not math.isclose(t, want_t, abs_tol=1e-9):
        raise WrongAnswer("Exercise 7.2: not yet: that threshold gives the lowest micro-F1, not the highest.")
    if not math.isclose(micro[grid.index(min(grid, key=lambda g: abs(g - t)))], want_f1, rel_tol=1e-12):
        raise WrongAnswer("Exercise 7.2: not yet: another threshold of the grid gives a higher micro-F1.")
    check_number("7.2", best_micro, want_f1, name="best_micro", rel=1e-9)


def _bootstrap_means(d: Any, n_boot: int, seed: int, chunk: int = 4000) -> Any:
    """Means of ``n_boot`` resamples (with replacement) of the 1-D array ``d``, drawn in chunks."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = [d[rng.integers(0, len(d), size=(min(chunk, n_boot - i), len(d)))].mean(1) for i in range(0, n_boot, chunk)]
    return np.concatenate(out)


def exercise_7_3(paired_bootstrap: Callable[..., Any], n: int = 300, seed: int = 0) -> None:
    """The student's ``paired_bootstrap(a, b, n_boot, level, seed) -> (low, high)``, the percentile interval of
    the mean paired difference ``a - b``, run on ``n`` positively correlated pairs the check draws itself, at
    levels 0.95 and 0.8, against the check's own bootstrap of 40,000 resamples. Endpoints must agree to 0.12
    of the bootstrap standard error (the student's 20,000 resamples and the check's each move them by about
    0.02 of it); a mismatch is diagnosed by the interval's centre and by the share of the check's resampled
    means it holds (its actual level), never by its expected endpoints."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shared = rng.standard_normal(n)  # each pair's common part (a film hard for both models): a and b correlate
    a = 0.3 + shared + 0.5 * rng.standard_normal(n)
    b = shared + 0.5 * rng.standard_normal(n)
    n_boot, ref_boot = 20000, 40000
    means = np.sort(_bootstrap_means(a - b, ref_boot, seed + 1))
    se = float(means.std())
    centre = float((a - b).mean())

    def call(level: float) -> tuple[float, float]:
        try:
            got = paired_bootstrap(a.copy(), b.copy(), n_boot=n_boot, level=level, seed=0)
        except NotImplementedError:
            raise _not_written("7.3", "paired_bootstrap(a, b, n_boot, level, seed)") from None
        if got is None:
            raise _not_written("7.3", "paired_bootstrap(a, b, n_boot, level, seed)")
        try:
            low, high = (float(v) for v in got)
        except (TypeError, ValueError):
            raise WrongAnswer(f"Exercise 7.3: expected paired_bootstrap to return two numbers (low, high), got "
                              f"{type(got).__name__}.") from None
        if not (math.isfinite(low) and math.isfinite(high)):
            raise WrongAnswer("Exercise 7.3: your interval has a NaN or infinite end.")
        if low > high:
            raise WrongAnswer("Exercise 7.3: not yet: low is above high; return (low, high).")
        return low, high

    def expected(level: float) -> tuple[float, float]:
        return (float(np.quantile(means, (1 - level) / 2)), float(np.quantile(means, (1 + level) / 2)))

    def close(got: tuple[float, float], want: tuple[float, float]) -> bool:
        return abs(got[0] - want[0]) <= 0.12 * se and abs(got[1] - want[1]) <= 0.12 * se

    def diagnose(got: tuple[float, float], level: float) -> None:
        low, high = got
        want = expected(level)
        if close(got, want):
            return
        width, want_width = high - low, want[1] - want[0]
        mid = (low + high) / 2
        if width < 0.05 * want_width:
            raise WrongAnswer("Exercise 7.3: not yet: your interval has (almost) no width. A resample drawn "
                              "without replacement holds every pair once, so every resample has the same mean: "
                              "draw n indices with replacement.")
        if abs(mid + centre) < 0.25 * se:
            raise WrongAnswer("Exercise 7.3: not yet: that interval is for b - a; the exercise asks for a - b.")
        if abs(mid - centre) > 0.25 * se:
            raise WrongAnswer("Exercise 7.3: not yet: your interval is not centred on the resampled means of "
                              "a - b: resample the differences of the pairs and average each resample.")
        if width > 1.3 * want_width:
            raise WrongAnswer("Exercise 7.3: not yet: your interval is too wide for these positively correlated "
                              "pairs. Resample the pairs: the same indices for a and b, so that what a pair shares "
                              "cancels in a - b.")
        held = float(((means >= low) & (means <= high)).mean())
        if abs(held - 0.683) < 0.03:
            what = "that is about plus or minus one standard error: take the percentiles of the resampled means."
        elif abs(held - (2 * level - 1)) < 0.03:
            what = "cut (1 - level) / 2 from each tail, not 1 - level."
        else:
            what = "take the (1 - level) / 2 and (1 + level) / 2 quantiles of the resampled means."
        raise WrongAnswer(f"Exercise 7.3: not yet: your interval holds {100 * held:.0f} % of the resampled mean "
                          f"differences where a {100 * level:.0f} % interval holds {100 * level:.0f} %: {what}")

    first = call(0.95)
    diagnose(first, 0.95)
    other = call(0.8)
    if close(other, expected(0.95)):
        raise WrongAnswer("Exercise 7.3: not yet: your function ignores level (at level=0.8 it returns the 95 % "
                          "interval).")
    diagnose(other, 0.8)
    if call(0.95) != first:
        raise WrongAnswer("Exercise 7.3: not yet: two calls with the same seed give different intervals: draw the "
                          "resamples from np.random.default_rng(seed).")
    _passed("7.3", "Your interval agrees with the check's own bootstrap at levels 0.95 and 0.8.")


# ------------------------------------------------------------------------------------------ notebook 08
def mango_places(results: Mapping[str, Any], models: Iterable[str] | None = None,
                 direction: Callable[[str], bool] | None = None) -> dict[str, int]:
    """MANGO's place (1 = best) among ``models`` (default: the four fused models) in every group of a
    reproduction's ``results``, by the task's headline metric (:mod:`mango_lite.tasks`); ``direction(task)``
    overrides whether higher is better (to name a mistake)."""
    from .tasks import get_task
    from .training.tasks import FUSION_MODELS

    places = {}
    for key, entry in results["results"].items():
        headline = get_task(entry["task"]).headline
        higher = headline.higher_is_better if direction is None else direction(entry["task"])
        names = tuple(models) if models is not None else FUSION_MODELS
        vals = {m: float(entry["models"][m][headline.key]) for m in names
                if headline.key in (entry["models"].get(m) or {})}
        if "mango" not in vals:
            continue
        places[key] = 1 + sum((v > vals["mango"]) if higher else (v < vals["mango"]) for m, v in vals.items() if m != "mango")
    return places


def exercise_8_1(places: Any, results: Mapping[str, Any]) -> None:
    """MANGO's place per group among the fused models: right when every group's place is."""
    if not places:
        raise NotAnswered("Exercise 8.1: no answer yet: fill in mango_places (group key -> place).")
    if not isinstance(places, Mapping):
        raise WrongAnswer(f"Exercise 8.1: expected mango_places as a dict (group key -> place), got {type(places).__name__}.")
    want = mango_places(results)
    missing = sorted(set(want) - set(places))
    if missing:
        raise WrongAnswer(f"Exercise 8.1: not yet: {len(missing)} group(s) have no place, e.g. {missing[0]!r}.")
    wrong = [k for k in want if places[k] != want[k]]
    if not wrong:
        _passed("8.1")
        return
    all_models = {m for e in results["results"].values() for m in e["models"]}
    if places == mango_places(results, models=sorted(all_models)) and places != want:
        raise WrongAnswer("Exercise 8.1: not yet: the places are among every trained model; the question asks "
                          "among the four fused ones (FUSION_MODELS).")
    if places == mango_places(results, direction=lambda task: True):
        raise WrongAnswer("Exercise 8.1: not yet: for some tasks a lower headline value is better (the second "
                          "element of HEADLINE[task]).")
    raise WrongAnswer(f"Exercise 8.1: not yet: {len(wrong)} of {len(want)} places differ, e.g. in {wrong[0]!r}.")
