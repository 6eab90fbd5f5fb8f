"""Compiled deformable-attention kernels (CPU and CUDA) against the pure-PyTorch reference.

Tolerances: float32 comparisons use atol 1e-5 (plus rtol 1e-5). Gradients with respect to sampling
locations are compared per pixel, i.e. divided by the level's (W, H): a normalised location moves W pixels
per unit, so its gradient is W times the per-pixel one (|grad| reaches ~260 at 512x512 shapes, where
float32 alone puts either implementation ~6e-4 from the float64 answer). A separate test shows the kernel
is as close to the float64 answer as the reference is.
16-bit CUDA results are compared with the float32 kernel by error relative to the largest magnitude.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import pytest
import torch

from mask2former_rankseg.layers import ShapeSpec
from mask2former_rankseg.modeling.pixel_decoder import MSDeformAttnPixelDecoder
from mask2former_rankseg.ops import dispatch, ms_deform_attn

CPU_KERNEL = dispatch._kernels("cpu") is not None
CUDA_KERNEL = dispatch._kernels("cuda") is not None and torch.cuda.is_available()
needs_cpu_kernel = pytest.mark.skipif(not CPU_KERNEL, reason="compiled CPU kernel not built "
                                      "(pip install --no-build-isolation -e .)")
needs_cuda_kernel = pytest.mark.skipif(not CUDA_KERNEL, reason="needs a GPU and the CUDA kernel (FORCE_CUDA=1 build)")

MASK2FORMER_512 = ((64, 64), (32, 32), (16, 16))  # strides 8/16/32 of a 512x512 input


def make_case(shapes: Sequence[Tuple[int, int]], n: int, q: int, heads: int, dim: int, points: int,
              dtype=torch.float32, device="cpu", outside: float = 0.15, seed: int = 0):
    """Random inputs; locations spread ``outside`` beyond [0, 1] on each side to hit the zero padding."""
    g = torch.Generator().manual_seed(seed)
    spatial = torch.tensor(shapes, dtype=torch.long)
    sizes = (spatial[:, 0] * spatial[:, 1]).tolist()
    start = torch.tensor([sum(sizes[:i]) for i in range(len(sizes))], dtype=torch.long)
    value = torch.randn(n, sum(sizes), heads, dim, generator=g, dtype=torch.float64)
    loc = torch.rand(n, q, heads, len(shapes), points, 2, generator=g, dtype=torch.float64) * (1 + 2 * outside)
    loc = loc - outside
    weights = torch.rand(n, q, heads, len(shapes) * points, generator=g, dtype=torch.float64).softmax(-1)
    weights = weights.view(n, q, heads, len(shapes), points)
    grad_out = torch.randn(n, q, heads * dim, generator=g, dtype=torch.float64)
    cast = dict(device=device, dtype=dtype)
    return (value.to(**cast), spatial.to(device), start.to(device), loc.to(**cast), weights.to(**cast),
            grad_out.to(**cast))


def per_pixel(grad_locations: torch.Tensor, spatial: torch.Tensor) -> torch.Tensor:
    """[N, Q, H, L, P, 2] gradient w.r.t. normalised (x, y) -> w.r.t. pixel coordinates of each level."""
    size = spatial.flip(-1).to(grad_locations)  # (W, H) per level
    return grad_locations / size[:, None, :]


def assert_matches(got: List[torch.Tensor], expected: List[torch.Tensor], spatial: torch.Tensor, label: str,
                   atol: float, rtol: float) -> None:
    for what, a, b in zip(NAMES, got, expected):
        if what == "grad_locations":
            a, b = per_pixel(a, spatial), per_pixel(b, spatial)
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m, w=what: f"{label} {w}: {m}")


def forward_backward(backend: str, value, spatial, start, loc, weights, grad_out) -> List[torch.Tensor]:
    """[output, grad_value, grad_locations, grad_weights]."""
    leaves = [t.detach().clone().requires_grad_(True) for t in (value, loc, weights)]
    out = ms_deform_attn(leaves[0], spatial, start, leaves[1], leaves[2], backend=backend)
    out.backward(grad_out)
    return [out.detach()] + [t.grad for t in leaves]


NAMES = ("output", "grad_value", "grad_locations", "grad_weights")
CASES = {
    # non-square levels, a 1-pixel-wide level, batch > 1, points outside the maps
    "non_square": dict(shapes=((7, 5), (3, 9), (1, 4)), n=2, q=11, heads=3, dim=5, points=3),
    "wide_channels": dict(shapes=((6, 6), (3, 3)), n=2, q=9, heads=2, dim=40, points=2, outside=0.5),
    "all_outside": dict(shapes=((4, 4),), n=1, q=3, heads=1, dim=4, points=2, outside=3.0),
    "mask2former_512": dict(shapes=MASK2FORMER_512, n=1, q=sum(h * w for h, w in MASK2FORMER_512), heads=8, dim=32,
                            points=4, outside=0.05),
}


@needs_cpu_kernel
@pytest.mark.parametrize("name", list(CASES))
def test_cpu_kernel_matches_reference_float32(name):
    inputs = make_case(**CASES[name])
    got = forward_backward("cpu", *inputs)
    expected = forward_backward("reference", *inputs)
    assert all(a.dtype == b.dtype == torch.float32 for a, b in zip(got, expected))
    assert_matches(got, expected, inputs[1], name, atol=1e-5, rtol=1e-5)
    if name == "all_outside":
        assert not got[0].any() and not got[1].any() and not got[2].any()


@needs_cpu_kernel
@pytest.mark.slow
def test_cpu_kernel_is_as_accurate_as_reference():
    """At 512x512 shapes, the float32 kernel is no further from the float64 answer than the float32 reference."""
    case = dict(CASES["mask2former_512"], dtype=torch.float64)
    inputs64 = make_case(**case)
    inputs32 = [t.float() if t.is_floating_point() else t for t in inputs64]
    truth = forward_backward("reference", *[t.double() if t.is_floating_point() else t for t in inputs32])
    kernel = forward_backward("cpu", *inputs32)
    reference = forward_backward("reference", *inputs32)
    for what, k, r, t in zip(NAMES, kernel, reference, truth):
        kernel_error = (k.double() - t).abs().max().item()
        reference_error = (r.double() - t).abs().max().item()
        assert kernel_error <= 1.5 * reference_error + 1e-6, (what, kernel_error, reference_error)


@needs_cpu_kernel
@pytest.mark.parametrize("name", ["non_square", "wide_channels", "all_outside"])
def test_cpu_kernel_matches_reference_float64(name):
    inputs = make_case(**CASES[name], dtype=torch.float64)
    assert_matches(forward_backward("cpu", *inputs), forward_backward("reference", *inputs), inputs[1], name,
                   atol=1e-12, rtol=1e-12)


@needs_cpu_kernel
@pytest.mark.parametrize("backend", ["cpu", "cuda"])
def test_gradcheck_float64(backend):
    if backend == "cuda" and not CUDA_KERNEL:
        pytest.skip("needs a GPU and the CUDA kernel")
    value, spatial, start, loc, weights, _ = make_case(((3, 4), (2, 5)), n=2, q=3, heads=2, dim=3, points=2,
                                                       dtype=torch.float64, device=backend, outside=0.3)
    # Bilinear interpolation has kinks on pixel-centre lines: keep samples off them (x*W - 0.5 not an integer).
    for level, (h, w) in enumerate(((3, 4), (2, 5))):
        size = torch.tensor([w, h], dtype=torch.float64, device=backend)
        pixel = loc[:, :, :, level] * size - 0.5
        frac = pixel - pixel.floor()
        pixel = pixel.floor() + frac.clamp(0.1, 0.9)
        loc[:, :, :, level] = (pixel + 0.5) / size
    leaves = [t.clone().requires_grad_(True) for t in (value, loc, weights)]
    assert torch.autograd.gradcheck(lambda v, l, a: ms_deform_attn(v, spatial, start, l, a, backend=backend),
                                    leaves, atol=1e-7, rtol=1e-5)


@needs_cpu_kernel
def test_cpu_kernel_hand_computed_gradients():
    """One 2x2 level, one channel, one sample at pixel coordinates (0.25, 0.5): values and all gradients by hand."""
    value = torch.tensor([1.0, 2.0, 3.0, 5.0], dtype=torch.float64).view(1, 4, 1, 1).requires_grad_(True)
    # pixel x = loc_x * 2 - 0.5 = 0.25 -> loc_x = 0.375; pixel y = 0.5 -> loc_y = 0.5
    loc = torch.tensor([0.375, 0.5], dtype=torch.float64).view(1, 1, 1, 1, 1, 2).requires_grad_(True)
    attn = torch.tensor([2.0], dtype=torch.float64).view(1, 1, 1, 1, 1).requires_grad_(True)
    out = ms_deform_attn(value, torch.tensor([[2, 2]]), torch.tensor([0]), loc, attn, backend="cpu")
    # corner weights: (1-0.5)(1-0.25)=0.375, 0.5*0.25=0.125, 0.375, 0.125 -> sample = 0.375+0.25+1.125+0.625
    sample = 0.375 * 1 + 0.125 * 2 + 0.375 * 3 + 0.125 * 5
    assert out.item() == pytest.approx(2.0 * sample)
    out.backward()
    torch.testing.assert_close(value.grad.view(-1), 2.0 * torch.tensor([0.375, 0.125, 0.375, 0.125],
                                                                         dtype=torch.float64))
    # d sample/d pixel x = 0.5*(2-1) + 0.5*(5-3) = 1.5; d/d pixel y = 0.75*(3-1) + 0.25*(5-2) = 2.25; x2 (W, H = 2)
    torch.testing.assert_close(loc.grad.view(-1), torch.tensor([2.0 * 1.5 * 2, 2.0 * 2.25 * 2], dtype=torch.float64))
    assert attn.grad.item() == pytest.approx(sample)


@needs_cpu_kernel
@pytest.mark.parametrize("dtype, tolerance", [(torch.float16, 5e-3), (torch.bfloat16, 3e-2)])
def test_cpu_kernel_16bit_values(dtype, tolerance):
    """16-bit values (locations and weights stay float32): close to the float32 kernel, gradients in input dtypes."""
    inputs = make_case(**CASES["non_square"])
    full = forward_backward("cpu", *inputs)
    value, spatial, start, loc, weights, grad_out = inputs
    low = forward_backward("cpu", value.to(dtype), spatial, start, loc, weights, grad_out.to(dtype))
    assert [t.dtype for t in low] == [dtype, dtype, torch.float32, torch.float32]
    for what, a, b in zip(NAMES, low, full):
        error = (a.float() - b).abs().max() / b.abs().max()
        assert error < tolerance, (what, error.item())


@needs_cpu_kernel
def test_cpu_backward_is_deterministic_across_thread_counts():
    inputs = make_case(**CASES["wide_channels"])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = forward_backward("cpu", *inputs)
        torch.set_num_threads(max(2, threads))
        multi = forward_backward("cpu", *inputs)
    finally:
        torch.set_num_threads(threads)
    for what, a, b in zip(NAMES, single, multi):
        assert torch.equal(a, b), what


@needs_cpu_kernel
@pytest.mark.parametrize("threads", [3, 16])
def test_cpu_backward_splits_queries_when_batch_times_heads_is_small(threads):
    """batch x heads = 1 < threads: the queries are split into chunks with their own value-gradient copies."""
    inputs = make_case(((5, 7), (2, 3)), n=1, q=13, heads=1, dim=6, points=2, dtype=torch.float64, outside=0.3)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        got = forward_backward("cpu", *inputs)
    finally:
        torch.set_num_threads(previous)
    assert_matches(got, forward_backward("reference", *inputs), inputs[1], f"{threads} threads", atol=1e-12,
                   rtol=1e-12)


@needs_cpu_kernel
def test_cpu_kernel_empty_queries_and_default_backend():
    value, spatial, start, loc, weights, _ = make_case(((3, 3),), n=2, q=0, heads=2, dim=4, points=2)
    assert ms_deform_attn(value, spatial, start, loc, weights, backend="cpu").shape == (2, 0, 8)
    assert dispatch.available_backend("cpu") == "cpu"
    inputs = make_case(**CASES["non_square"])
    torch.testing.assert_close(ms_deform_attn(*inputs[:5]), ms_deform_attn(*inputs[:5], backend="cpu"), atol=0, rtol=0)


@needs_cpu_kernel
def test_extension_rejects_bad_arguments():
    ext = dispatch._extension()
    value, spatial, start, loc, weights, grad_out = make_case(((3, 3),), n=1, q=2, heads=2, dim=4, points=1)
    with pytest.raises(RuntimeError, match="sampling_locations and attention_weights must be Float"):
        ext.ms_deform_attn_cpu_forward(value.half(), spatial, start, loc.half(), weights.half())
    with pytest.raises(RuntimeError, match="value must be contiguous"):
        ext.ms_deform_attn_cpu_forward(value.transpose(2, 3), spatial, start, loc, weights)
    with pytest.raises(RuntimeError, match="spatial_shapes and level_start_index must be int64"):
        ext.ms_deform_attn_cpu_forward(value, spatial.int(), start, loc, weights)
    with pytest.raises(RuntimeError, match=r"grad_output must be \[N, Q, H\*D\]"):
        ext.ms_deform_attn_cpu_backward(value, spatial, start, loc, weights, grad_out[:, :1])
    if hasattr(ext, "ms_deform_attn_cuda_forward"):  # built with FORCE_CUDA=1 (as in CI), GPU or not
        with pytest.raises(RuntimeError, match="value must be on cuda"):
            ext.ms_deform_attn_cuda_forward(value, spatial, start, loc, weights)


@needs_cpu_kernel
def test_pixel_decoder_outputs_equal_with_kernel_and_reference(monkeypatch):
    shapes = {"res2": ShapeSpec(channels=8, stride=4), "res3": ShapeSpec(channels=12, stride=8),
              "res4": ShapeSpec(channels=16, stride=16), "res5": ShapeSpec(channels=20, stride=32)}
    decoder = MSDeformAttnPixelDecoder(shapes, transformer_dropout=0.0, transformer_nheads=4,
                                       transformer_dim_feedforward=32, transformer_enc_layers=2, conv_dim=32,
                                       mask_dim=16, norm="GN", transformer_in_features=["res3", "res4", "res5"],
                                       common_stride=4)
    # non-square input (96 x 160) so the levels are non-square too; non-zero offsets and attention weights
    with torch.no_grad():
        for name, p in decoder.named_parameters():
            if "sampling_offsets" in name or "attention_weights" in name:
                p.normal_(0, 0.2)
    features = {k: torch.randn(2, s.channels, 96 // s.stride, 160 // s.stride) for k, s in shapes.items()}

    def run(force_reference: bool):
        if force_reference:
            monkeypatch.setenv(dispatch.FORCE_REFERENCE_ENV, "1")
        else:
            monkeypatch.delenv(dispatch.FORCE_REFERENCE_ENV, raising=False)
        assert dispatch.backend("cpu") == ("reference" if force_reference else "cpu")
        decoder.zero_grad()
        mask_features, _, multi_scale = decoder.forward_features(features)
        (mask_features.square().mean() + sum(f.mean() for f in multi_scale)).backward()
        grads = {n: p.grad.clone() for n, p in decoder.named_parameters() if p.grad is not None}
        return [mask_features.detach()] + [f.detach() for f in multi_scale], grads

    kernel_out, kernel_grads = run(False)
    ref_out, ref_grads = run(True)
    for a, b in zip(kernel_out, ref_out):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert kernel_grads.keys() == ref_grads.keys()
    assert any("sampling_offsets" in n for n in kernel_grads)
    for n in kernel_grads:
        torch.testing.assert_close(kernel_grads[n], ref_grads[n], atol=1e-5, rtol=1e-4, msg=lambda m, n=n: f"{n}: {m}")


# --- CUDA (skipped without a GPU) ---------------------------------------------------------------------------------


@needs_cuda_kernel
@pytest.mark.parametrize("name", list(CASES))
def test_cuda_kernel_matches_reference_float32(name):
    inputs = make_case(**CASES[name], device="cuda")
    assert_matches(forward_backward("cuda", *inputs), forward_backward("reference", *inputs), inputs[1], name,
                   atol=1e-5, rtol=1e-5)


@needs_cuda_kernel
@pytest.mark.parametrize("name", ["non_square", "wide_channels", "all_outside"])
def test_cuda_kernel_matches_reference_float64_and_cpu_kernel(name):
    inputs = make_case(**CASES[name], dtype=torch.float64, device="cuda")
    cpu_inputs = [t.cpu() for t in inputs]
    cuda = forward_backward("cuda", *inputs)
    assert_matches(cuda, forward_backward("reference", *inputs), inputs[1], name, atol=1e-12, rtol=1e-12)
    assert_matches([t.cpu() for t in cuda], forward_backward("cpu", *cpu_inputs), cpu_inputs[1], name, atol=1e-12,
                   rtol=1e-12)


@needs_cuda_kernel
@pytest.mark.parametrize("dtype, tolerance", [(torch.float16, 5e-3), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("name", ["non_square", "mask2former_512"])
def test_cuda_kernel_16bit_against_float32(name, dtype, tolerance):
    """float16: max error <= 0.5% of the largest magnitude; bfloat16 (8-bit mantissa): <= 3%."""
    inputs = make_case(**CASES[name], device="cuda")
    full = forward_backward("cuda", *inputs)
    value, spatial, start, loc, weights, grad_out = inputs
    low = forward_backward("cuda", value.to(dtype), spatial, start, loc, weights, grad_out.to(dtype))
    assert [t.dtype for t in low] == [dtype, dtype, torch.float32, torch.float32]
    for what, a, b in zip(NAMES, low, full):
        error = (a.float() - b).abs().max() / b.abs().max()
        assert error < tolerance, (name, what, error.item())
    # and under autocast the module path runs the kernel in 16 bits without touching the locations' dtype
    with torch.autocast("cuda", dtype=dtype):
        out = ms_deform_attn(value.to(dtype), spatial, start, loc, weights)
    assert out.dtype == dtype
