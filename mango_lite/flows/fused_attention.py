"""ICA's forward without materialising the attention matrix: ``S @ X2`` and S's diagonal from fused kernels.

The forward of an ICA layer needs two things from the masked softmax S (B, heads, T, T): the product
S V with X2's tokens, and the diagonal s_ii for the log-det d * sum_i log(1 + gamma_i s_ii). Neither needs
S itself. With logits l_ij = q_i . k_j (q already carrying the temperature) and the row log-sum-exp
lse_i = log sum_{j allowed} exp(l_ij),

    s_ii = exp(q_i . k_i - lse_i).

A fused attention kernel (PyTorch's ``scaled_dot_product_attention``) computes S V in blocks, never holding
the T x T matrix, and its backward recomputes what it needs. The log-sum-exp is differentiable too:

    d lse_i / d q_i = sum_j s_ij k_j = (S K)_i,        d lse_i / d k_j = s_ij q_i,

that is, the gradient of lse is itself an attention product. It needs no pass of its own: an attention
kernel's backward computes the logits' gradient as s_ij (dO_i . v_j - Delta_i) with Delta_i = dO_i . o_i read
from the output it is given, and the gradient lse adds to logit l_ij is g_i s_ij (g = dL/dlse). Handing the
backward one extra value column that is zero, with output -g_i and output gradient 1, turns Delta_i into
Delta_i - g_i: one backward kernel then returns the gradients of S V and of lse together
(:class:`_CausalAttentionWithLSE`, on the CPU, whose flash kernel returns lse in its forward and takes the
output in its backward). Forward and backward of the layer are then one fused attention each, memory linear
in T. Elsewhere :func:`masked_attention_terms` builds lse's gradient from a second product, S K for the
queries and S^T (g * Q) (the value-gradient of an attention whose values are K) for the keys.

The inverse still materialises A = I + diag(gamma) S (one triangular solve needs it); it is not on the
training path. The upper triangle (row i reads j >= i) is the causal mask on the reversed token order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

__all__ = ["masked_attention_terms", "masked_lse_reference"]

#: rows of the T x T logits held at once by the fallback log-sum-exp (devices without a kernel returning it)
_ROW_CHUNK = 256


def masked_lse_reference(q: Tensor, k: Tensor, chunk: int = _ROW_CHUNK) -> Tensor:
    """Row log-sum-exp of the causal (j <= i) logits q k^T, (B, h, T), computed ``chunk`` rows at a time
    without gradient: the fallback where no fused kernel returns it."""
    t = q.shape[-2]
    out = []
    with torch.no_grad():
        cols = torch.arange(t, device=q.device)
        for start in range(0, t, chunk):
            rows = torch.arange(start, min(start + chunk, t), device=q.device)
            logits = q[..., rows, :] @ k.transpose(-1, -2)
            logits = logits.masked_fill(cols[None, :] > rows[:, None], float("-inf"))
            out.append(torch.logsumexp(logits, dim=-1))
    return torch.cat(out, dim=-1)


def _keys_product_and_lse(q: Tensor, k: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    """(S values, lse) of the causal softmax of q k^T; the product differentiable in ``values`` only when q
    and k come detached. One fused pass on CUDA (the memory-efficient kernel returns the log-sum-exp, in
    float32 and half precision); elsewhere the public fused attention and a chunked log-sum-exp (the CPU's
    flash kernel serves :func:`_single_pass_terms` instead)."""
    if q.device.type == "cuda" and q.dtype in (torch.float32, torch.float16, torch.bfloat16):
        try:  # the memory-efficient kernel returns the log-sum-exp (padded to a multiple of 32 rows)
            out, lse, _, _ = torch.ops.aten._scaled_dot_product_efficient_attention(
                q.contiguous(), k.contiguous(), values.contiguous(), None, True, 0.0, True, scale=1.0)
            return out, lse[..., : q.shape[-2]].to(q.dtype)
        except (RuntimeError, AttributeError):  # no such kernel for this shape or build: the portable path
            pass
    out = F.scaled_dot_product_attention(q, k, values, is_causal=True, scale=1.0)
    return out, masked_lse_reference(q, k)


def _pad_last(x: Tensor, width: int) -> Tensor:
    """``x`` with zero columns appended up to ``width`` along the last dimension (``x`` itself if already so)."""
    return x if x.shape[-1] == width else F.pad(x, (0, width - x.shape[-1]))


class _CausalAttentionWithLSE(torch.autograd.Function):
    """``(S V, lse)`` of the causal softmax S of q k^T (scale 1), both differentiable, through the CPU flash
    kernel: one fused forward and one fused backward (module docstring). q, k, v: (B, h, T, d), one width."""

    @staticmethod
    def forward(ctx: FunctionCtx, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, True, scale=1.0)
        ctx.save_for_backward(q, k, v, out, lse)
        return out, lse

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_out: Tensor | None, grad_lse: Tensor | None
                 ) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v, out, lse = ctx.saved_tensors  # type: ignore[attr-defined]
        grad_out = torch.zeros_like(out) if grad_out is None else grad_out
        backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
        if grad_lse is None:
            return backward(grad_out.contiguous(), q, k, v, out, lse, 0.0, True, scale=1.0)
        width = q.shape[-1] + 1  # one extra column: value 0, output -g, output gradient 1 (Delta_i - g_i)
        extra_out = torch.cat([out, -grad_lse.unsqueeze(-1).to(out.dtype)], dim=-1)
        extra_grad = torch.cat([grad_out, torch.ones_like(out[..., :1])], dim=-1)
        dq, dk, dv = backward(extra_grad, _pad_last(q, width), _pad_last(k, width), _pad_last(v, width), extra_out,
                              lse, 0.0, True, scale=1.0)
        return dq[..., :-1], dk[..., :-1], dv[..., :-1]


def _single_pass_terms(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor] | None:
    """``(S v, lse)`` through :class:`_CausalAttentionWithLSE` where the CPU flash kernel runs, else ``None``.
    The kernel wants one width for q, k and v: zero columns pad the narrower (they change no logit, and the
    values' padded output columns are dropped)."""
    if q.device.type != "cpu" or not hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        return None
    dtype = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
    if dtype not in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        return None
    width = max(q.shape[-1], v.shape[-1])
    q, k, vp = (_pad_last(t.to(dtype), width).contiguous() for t in (q, k, v))
    sv, lse = _CausalAttentionWithLSE.apply(q, k, vp)
    return sv[..., : v.shape[-1]], lse


def masked_attention_terms(q: Tensor, k: Tensor, v: Tensor, upper: bool) -> tuple[Tensor, Tensor]:
    """``(S @ v, diag(S))`` for S = softmax(mask(q k^T)) per head, without forming S.

    ``q``, ``k``: (B, h, T, d_qk), scaled (the temperature folded into q); ``v``: (B, h, T, d).
    ``upper``: row i reads tokens j >= i (else j <= i). Returns (B, h, T, d) and (B, h, T), both with exact
    gradients with respect to q, k and v (tested against the materialised S in float64)."""
    if upper:  # j >= i is the causal mask on the reversed order
        q, k, v = q.flip(-2), k.flip(-2), v.flip(-2)
    single = _single_pass_terms(q, k, v)
    if single is not None:
        sv, lse = single
    else:
        sv = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0)
        qd = q.detach()
        sk, lse_value = _keys_product_and_lse(qd, k.detach(), k)  # S K: gradient only through its values, K
        skd = sk.detach()
        # value lse; gradient (S K)_i for q_i and sum_i s_ij q_i for k_j (module docstring)
        lse = lse_value.detach() + ((q - qd) * skd).sum(-1) + (qd * (sk - skd)).sum(-1)
    diagonal = torch.exp((q * k).sum(-1) - lse)
    if upper:
        sv, diagonal = sv.flip(-2), diagonal.flip(-1)
    return sv, diagonal
