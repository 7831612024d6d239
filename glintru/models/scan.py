"""Linear recurrences h_t = a_t * h_{t-1} + b_t: a log-depth parallel scan, its sequential
reference, and Mamba's selective scan built on them (pure PyTorch, with an optional CUDA kernel)."""

from __future__ import annotations

import importlib.util

import torch
from torch.utils.checkpoint import checkpoint

SCAN_BACKENDS = ("auto", "parallel", "sequential", "cuda")

# Elements of one [L, batch, channels, d_state] chunk of the parallel selective scan (channels are
# independent, so it runs channel slice by channel slice). The scan is memory-bound: on CPU, slices
# of a few MB run faster than one huge tensor; on GPU, large slices keep the device busy. Either
# way the slices bound training memory, as each is recomputed in backward.
DEFAULT_CHUNK_ELEMENTS = {"cpu": 1 << 21, "cuda": 1 << 27}


def sequential_scan(a: torch.Tensor, b: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t with h_{-1} = 0, one step at a time along `dim` (the reference)."""
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.movedim(dim, 0), b.movedim(dim, 0)
    h = torch.zeros_like(b[0])
    out = []
    for t in range(b.size(0)):
        h = a[t] * h + b[t]
        out.append(h)
    return torch.stack(out, 0).movedim(0, dim)


def _odd_even_scan_(a: torch.Tensor, h: torch.Tensor) -> None:
    """In place: h holds b on entry and the states on exit; scans along dim 0; a is not modified.

    Work-efficient (Blelloch-style), depth O(log T), work O(T). Up-sweep: fold step 2k into step
    2k+1 so that the odd steps alone map h_{2k-1} to h_{2k+1}; scan them recursively (a strided
    view of h, so nothing is copied). Down-sweep: h_{2k} = a_{2k} h_{2k-1} + b_{2k}. Which elements
    are combined depends only on their indices, never on T, so a prefix gets bit-identical states
    whatever follows it (padding invariance). Only the composed a's are allocated (T/2 + T/4 + ...).
    """
    T = h.size(0)
    if T == 1:
        return
    n_odd = T // 2
    a_even, a_odd = a[0::2], a[1::2]
    h_even, h_odd = h[0::2], h[1::2]
    h_odd.addcmul_(a_odd, h_even[:n_odd])
    _odd_even_scan_(a_odd * a_even[:n_odd], h_odd)
    h_even[1:].addcmul_(a_even[1:], h_odd[: h_even.size(0) - 1])


class _LinearScan(torch.autograd.Function):
    """The parallel scan along dim 0 with its adjoint as the backward pass.

    For h_t = a_t h_{t-1} + b_t and upstream gradient g: the gradient w.r.t. h obeys the reversed
    recurrence gh_t = a_{t+1} gh_{t+1} + g_t, so grad_b = gh and grad_a_t = gh_t h_{t-1}: one more
    scan instead of differentiating through every step of the forward one.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        h = b.clone()
        _odd_even_scan_(a, h)
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        a, h = ctx.saved_tensors
        # Reversed time: step t of the flipped recurrence multiplies by a at original index t+1;
        # the value at flipped index 0 multiplies h_{-1} = 0 and so is irrelevant.
        gh = g.flip(0)
        _odd_even_scan_(torch.roll(a.flip(0), 1, 0), gh)
        gh = gh.flip(0)
        grad_a = torch.zeros_like(a)
        grad_a[1:] = gh[1:] * h[:-1]
        return grad_a, gh


def parallel_scan(a: torch.Tensor, b: torch.Tensor, dim: int = 1, *, overwrite_b: bool = False) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t with h_{-1} = 0 along `dim`, in O(log T) sequential steps.

    overwrite_b: without autograd, write the states into b and return it (saves a copy).
    """
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    if b.size(dim) == 0:
        return b.clone()
    a0, b0 = a.movedim(dim, 0), b.movedim(dim, 0)
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return _LinearScan.apply(a0, b0).movedim(0, dim)
    h = b0 if overwrite_b else b0.clone()
    _odd_even_scan_(a0, h)
    return h.movedim(0, dim)


def mamba_ssm_available() -> bool:
    return importlib.util.find_spec("mamba_ssm") is not None


def _check_shapes(x, delta, A, B, C, D) -> None:
    if x.dim() != 3 or delta.shape != x.shape:
        raise ValueError(f"x and delta must both be [batch, L, channels]; got {tuple(x.shape)}, {tuple(delta.shape)}")
    batch, L, ch = x.shape
    if A.dim() != 2 or A.size(0) != ch:
        raise ValueError(f"A must be [channels={ch}, d_state]; got {tuple(A.shape)}")
    n = A.size(1)
    for name, t in (("B", B), ("C", C)):
        if tuple(t.shape) != (batch, L, n):
            raise ValueError(f"{name} must be [batch, L, d_state] = {(batch, L, n)}; got {tuple(t.shape)}")
    if D is not None and tuple(D.shape) != (ch,):
        raise ValueError(f"D must be [channels={ch}]; got {tuple(D.shape)}")


def _scan_chunk(
    x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> torch.Tensor:
    """y_t = C_t . h_t for a slice of channels, time-major ([L, batch, ...]) so that every step of
    the scan is one contiguous block; the [L, batch, c, N] states exist only in here."""
    a = (delta.unsqueeze(-1) * A).exp_()  # discretised A: exp(delta A), zero-order hold
    b = (delta * x).unsqueeze(-1) * B.unsqueeze(2)  # delta B x, Mamba's simplified discretisation
    h = parallel_scan(a, b, dim=0, overwrite_b=True)
    # A batched matrix-vector product per (step, row): as einsum it becomes L*batch tiny GEMMs,
    # far slower than one vectorised multiply and reduction.
    C = C.unsqueeze(2)
    return (h * C if h.requires_grad else h.mul_(C)).sum(-1)


def _selective_scan_parallel(x, delta, A, B, C, chunk_elements: int | None) -> torch.Tensor:
    batch, L, ch = x.shape
    n = A.size(1)
    budget = chunk_elements or DEFAULT_CHUNK_ELEMENTS.get(x.device.type, DEFAULT_CHUNK_ELEMENTS["cuda"])
    step = max(1, min(ch, budget // max(1, batch * L * n)))
    # Recompute each chunk's states in backward instead of storing them: they are d_state times
    # larger than everything else in the model.
    recompute = torch.is_grad_enabled() and any(t.requires_grad for t in (x, delta, A, B, C))
    x, delta = x.transpose(0, 1).contiguous(), delta.transpose(0, 1).contiguous()
    B, C = B.transpose(0, 1).contiguous(), C.transpose(0, 1).contiguous()
    ys = []
    for c0 in range(0, ch, step):
        args = (x[..., c0 : c0 + step], delta[..., c0 : c0 + step], A[c0 : c0 + step], B, C)
        ys.append(checkpoint(_scan_chunk, *args, use_reentrant=False) if recompute else _scan_chunk(*args))
    y = ys[0] if len(ys) == 1 else torch.cat(ys, -1)
    return y.transpose(0, 1)


def selective_scan_reference(x, delta, A, B, C, D=None) -> torch.Tensor:
    """The selective scan one step at a time (memory O(batch * channels * d_state)); for tests."""
    _check_shapes(x, delta, A, B, C, D)
    batch, L, ch = x.shape
    h = x.new_zeros(batch, ch, A.size(1))
    ys = []
    for t in range(L):
        dt = delta[:, t].unsqueeze(-1)
        h = torch.exp(dt * A) * h + (dt * x[:, t].unsqueeze(-1)) * B[:, t].unsqueeze(1)
        ys.append(torch.einsum("bcn,bn->bc", h, C[:, t]))
    y = torch.stack(ys, 1)
    return y if D is None else y + x * D


def _selective_scan_cuda(x, delta, A, B, C, D) -> torch.Tensor:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    y = selective_scan_fn(
        x.transpose(1, 2).contiguous(),
        delta.transpose(1, 2).contiguous(),
        A.contiguous(),
        B.transpose(1, 2).contiguous(),
        C.transpose(1, 2).contiguous(),
        None if D is None else D.float().contiguous(),
    )
    return y.transpose(1, 2)


def resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in SCAN_BACKENDS:
        raise ValueError(f"unknown scan backend {backend!r}; choose one of {', '.join(SCAN_BACKENDS)}")
    if backend == "auto":
        return "cuda" if device.type == "cuda" and mamba_ssm_available() else "parallel"
    if backend == "cuda" and not (device.type == "cuda" and mamba_ssm_available()):
        raise RuntimeError("scan backend 'cuda' needs the mamba_ssm package and CUDA tensors; use 'auto' or 'parallel'")
    return backend


def selective_scan(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    *,
    backend: str = "auto",
    chunk_elements: int | None = None,
) -> torch.Tensor:
    """Mamba's selective SSM over x[batch, L, channels] -> y[batch, L, channels].

    h_t = exp(delta_t A) * h_{t-1} + delta_t B_t x_t,  y_t = C_t . h_t + D x_t  (per channel),
    with delta[batch, L, channels] (already softplus-ed), A[channels, N] (negative), B and
    C[batch, L, N] shared by all channels, D[channels]. Causal: y_t depends on steps <= t only.
    Computed in at least float32 whatever the autocast state: the recurrence is sensitive to rounding.
    backend: "parallel" (log-depth scan, any device), "sequential" (step loop), "cuda" (mamba_ssm
    kernel) or "auto" (the kernel for CUDA tensors when mamba_ssm is installed, else parallel).
    """
    _check_shapes(x, delta, A, B, C, D)
    kind = resolve_backend(backend, x.device)
    dtype = x.dtype
    with torch.autocast(device_type=x.device.type, enabled=False):
        work = torch.promote_types(dtype, torch.float32)
        x, delta, A, B, C = (t.to(work) for t in (x, delta, A, B, C))
        if kind == "cuda":
            return _selective_scan_cuda(x, delta, A, B, C, D).to(dtype)
        if kind == "sequential":
            y = selective_scan_reference(x, delta, A, B, C)
        else:
            y = _selective_scan_parallel(x, delta, A, B, C, chunk_elements)
        if D is not None:
            y = y + x * D.to(work)
    return y.to(dtype)
