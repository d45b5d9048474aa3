r"""Causal attention averages: the two primitives every oracle is built from.

* :func:`softmax_attention` — :math:`\mathrm{out}_i=\sum_{j\le i}P_{ij}v_j`,
  :math:`P_{ij}=e^{s_{ij}}/\sum_{l\le i}e^{s_{il}}`, :math:`s_{ij}=\mathrm{scale}\,q_i\cdot k_j`,
  and optionally :math:`\mathrm{LSE}_i=\log\sum_{j\le i}e^{s_{ij}}` with its gradient.
* :func:`linear_attention` — :math:`\mathrm{out}_i=\sum_{j\le i}(q_i\cdot k_j)\,v_j`
  (unnormalised; the oracles divide by the prefix count i), in O(T·D²) time with a chunked state.

Queries are the **last** L of the S key positions (lower-right causal alignment), so the same code
serves a full forward (L = S) and cached decoding (L = 1, S = prefix length)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from sympformer.dynamics.memory import Tape

_flash_cpu = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_flash_cpu_backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


LINEAR_CHUNK = 32
"""Tokens per chunk of the chunked causal linear attention: (chunk, chunk) masked products inside a
chunk, the (D, D) prefix state between chunks. 32 measured 10-15 % faster than 64 for whole-model
training at context 128 and the same at 1024-4096 (CPU, D = 16)."""

LINEAR_QUADRATIC_MAX = LINEAR_CHUNK
"""Longest run of new tokens for which causal linear attention uses the masked quadratic form
instead of chunks: up to one chunk (the same products, without padding a short run, e.g. one
decoded token, to a whole chunk). Measured by `benchmarks.targets` (forward + backward, paper
shapes, 2 threads): quadratic / chunked time 1.03 at 32 tokens, 1.09 at 64, 1.26 at 128, 2.2 at
256, so the chunks win from the second chunk on."""


def prefix_counts(length: int, offset: int, like: Tensor) -> Tensor:
    """The prefix sizes i = offset + 1, ..., offset + length of the queries, shape (length,)."""
    return torch.arange(offset + 1, offset + length + 1, dtype=like.dtype, device=like.device)


def _causal_mask(n_q: int, n_k: int, device: torch.device) -> Tensor:
    """(L, S) boolean mask, True where key j <= query i (queries are the last L positions)."""
    i = torch.arange(n_k - n_q, n_k, device=device)[:, None]
    return torch.arange(n_k, device=device)[None, :] <= i


def attention_reference(
    q: Tensor, k: Tensor, v: Tensor, scale: float, causal: bool = True
) -> tuple[Tensor, Tensor]:
    """Materialised softmax attention, the reference for the fused path.

    Args:
        q: (B, H, L, D) queries; k: (B, H, S, D) keys; v: (B, H, S, Dv) values; S >= L.
    Returns:
        out (B, H, L, Dv) and LSE (B, H, L) in the dtype of q.
    """
    s = (q @ k.mT) * scale  # (B, H, L, S)
    if causal:
        s = s.masked_fill(~_causal_mask(q.shape[-2], k.shape[-2], q.device), float("-inf"))
    lse = torch.logsumexp(s, dim=-1)  # (B, H, L)
    return torch.exp(s - lse[..., None]) @ v, lse


class _FlashWithLSE(torch.autograd.Function):
    """PyTorch's fused CPU attention kernel, returning the log-sum-exp *with* its gradient.

    The kernel's backward computes ds_ij = P_ij (dO_i·v_j - D_i) with D_i = dO_i·out_i. A gradient
    g_i on LSE_i adds g_i P_ij to ds_ij, i.e. replaces D_i by D_i - g_i. We obtain that by appending
    one zero column to q, k, v, a column of ones to dO and the column -g to out: then D'_i = D_i -
    g_i and dO'_i·v'_j = dO_i·v_j. Checked against autograd of the reference in float64. ``v=None``
    means the values are the keys (the oracle's first pass): passing one tensor twice would stop
    torch.compile from tracing the function."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor | None, causal: bool, scale: float):
        values = k if v is None else v
        out, lse = _flash_cpu(q, k, values, 0.0, causal, scale=scale)
        ctx.save_for_backward(q, k, values, out, lse)
        ctx.causal, ctx.scale, ctx.keys_as_values = causal, scale, v is None
        return out, lse

    @staticmethod
    def backward(ctx, g_out: Tensor | None, g_lse: Tensor | None):
        q, k, v, out, lse = ctx.saved_tensors
        g_out = torch.zeros_like(out) if g_out is None else g_out
        g_lse = torch.zeros_like(lse) if g_lse is None else g_lse
        pad = lambda a: F.pad(a, (0, 1))  # noqa: E731  (one extra zero feature)
        g_out2 = torch.cat([g_out, torch.ones_like(out[..., :1])], dim=-1)
        out2 = torch.cat([out, -g_lse.to(out.dtype)[..., None]], dim=-1)
        k2 = pad(k)
        v2 = k2 if ctx.keys_as_values else pad(v)  # the keys, padded once
        dq, dk, dv = _flash_cpu_backward(
            g_out2.contiguous(), pad(q), k2, v2, out2, lse, 0.0, ctx.causal, scale=ctx.scale
        )
        dq, dk, dv = dq[..., :-1], dk[..., :-1], dv[..., :-1]
        if ctx.keys_as_values:
            return dq, dk + dv, None, None, None
        return dq, dk, dv, None, None


def _fusable(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> bool:
    aligned = not causal or q.shape[-2] in (1, k.shape[-2])
    return (
        q.device.type == "cpu"
        and aligned
        and q.dtype in (torch.float32, torch.float64, torch.bfloat16)
        and q.dtype == k.dtype == v.dtype
        and q.shape[-1] == k.shape[-1] == v.shape[-1]
    )


def softmax_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    scale: float | None = None,
    causal: bool = True,
    need_lse: bool = False,
    fused: bool = True,
) -> tuple[Tensor, Tensor | None]:
    r"""Softmax average :math:`\sum_{j\le i}P_{ij}v_j` and, if asked, :math:`\mathrm{LSE}_i`.

    Args:
        q: (B, H, L, D) queries, the last L of the S positions; k: (B, H, S, D); v: (B, H, S, D).
        scale: score scale, default 1/sqrt(D). causal: mask keys after each query; False gives the
        global (bidirectional) average. need_lse: also return LSE (B, H, L), differentiable. fused:
        use the fused kernel where available (CPU: PyTorch's flash kernel; elsewhere and for
            odd shapes the materialised reference, which is exact but stores the (L, S) scores).
    Returns:
        out (B, H, L, D) and LSE (B, H, L) or None.
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    is_causal = causal and q.shape[-2] > 1  # one query is the last position: it sees every key
    if fused and not need_lse and (not is_causal or q.shape[-2] == k.shape[-2]):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, scale=scale)
        return out, None
    if fused and need_lse and _fusable(q, k, v, is_causal):
        out, lse = _FlashWithLSE.apply(q, k, None if v is k else v, is_causal, scale)
        return out, lse
    return attention_reference(q, k, v, scale, is_causal)


def causal_weights(n_q: int, offset: int, mean: bool, scale: float, like: Tensor) -> Tensor:
    """(L, L) weights of the masked quadratic form: scale·[j <= i] / i for a prefix mean (i counts
    the ``offset`` earlier tokens too), or scale·[j <= i] for a sum; dtype and device of
    ``like``."""
    mask = torch.full((n_q, n_q), scale, dtype=like.dtype, device=like.device).tril()
    return mask / prefix_counts(n_q, offset, like)[:, None] if mean else mask


def _normalise(out: Tensor, offset: int, mean: bool, scale: float) -> Tensor:
    """out · scale / i (mean) or out · scale, skipping a product by one."""
    if mean:
        return out / (prefix_counts(out.shape[-2], offset, out)[:, None] / scale)
    return out * scale if scale != 1.0 else out


def linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    causal: bool = True,
    tape: Tape | None = None,
    chunk: int = LINEAR_CHUNK,
    mean: bool = False,
    scale: float = 1.0,
    quadratic_max: int | None = None,
) -> Tensor:
    r"""Linear attention :math:`\mathrm{out}_i=w_i\sum_{j\le i}(q_i\cdot k_j)\,v_j`, with
    :math:`w_i=\mathrm{scale}` or, for ``mean``, :math:`w_i=\mathrm{scale}/i` (i the prefix count;
    N for ``causal=False``).

    Two exact causal forms, picked by the number L of new tokens: for L <= ``quadratic_max``
    (default :data:`LINEAR_QUADRATIC_MAX`, one chunk) the masked quadratic form
    :math:`((qk^\top)\odot W)v` with the weights W of :func:`causal_weights`; beyond, chunks of
    ``chunk`` tokens with the running state :math:`S=\sum_j k_jv_j^\top` (Dk, Dv) carried between
    chunks — O(T·chunk·D + T·D²) time, O(D²) state per chunk boundary. With a ``tape`` the state
    continues from earlier tokens (and i counts them).

    Args:
        q, k: (B, H, L, Dk); v: (B, H, L, Dv). causal: False gives the global sum (or mean) over
        all L tokens.
    Returns:
        (B, H, L, Dv).
    """
    n = q.shape[-2]
    if not causal:
        out = q @ (k.mT @ v)  # (B, H, L, Dv)
        return out * (scale / n) if mean else _normalise(out, 0, False, scale)
    past = tape.carry() if tape is not None else None
    offset = 0 if tape is None else tape.offset
    if n <= (LINEAR_QUADRATIC_MAX if quadratic_max is None else quadratic_max):
        weights = causal_weights(n, offset, mean, scale, q)  # (L, L)
        out = ((q @ k.mT) * weights) @ v  # (B, H, L, Dv)
        total = k.mT @ v if tape is not None else None
        if past is not None:
            out = out + _normalise(q @ past, offset, mean, scale)
    else:
        pad = (-n) % chunk  # a whole number of chunks needs no padded copy
        qc, kc, vc = (
            (F.pad(a, (0, 0, 0, pad)) if pad else a).unflatten(-2, (-1, chunk)) for a in (q, k, v)
        )
        out = (qc @ kc.mT).tril() @ vc  # (B, H, N, c, Dv): within each chunk
        states = kc.mT @ vc  # (B, H, N, Dk, Dv): each chunk's contribution
        before = states.cumsum(dim=-3) - states  # exclusive prefix over chunks
        out = (out + qc @ before).flatten(-3, -2)
        out = out[..., :n, :] if pad else out
        total = states.sum(dim=-3)
        if past is not None:
            out = out + q @ past
        out = _normalise(out, offset, mean, scale)
    if tape is not None:
        tape.store(total if past is None else total + past)
    return out
