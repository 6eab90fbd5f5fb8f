"""Multi-scale deformable attention: reference vs a naive loop, hand values, gradients, dispatch, the module."""

import logging
import math
from types import SimpleNamespace

import pytest
import torch

from mask2former_rankseg.ops import MSDeformAttn, backend, dispatch, ms_deform_attn, ms_deform_attn_reference


def _bilinear_zero_pad(img: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """img [D, H, W]; (x, y) in [0, 1], 0/1 = outer edges of the map (align_corners=False); zero outside."""
    d, h, w = img.shape
    px, py = x * w - 0.5, y * h - 0.5  # continuous pixel coordinates, pixel centres at integers
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(d, dtype=img.dtype)
    for yy, wy in ((y0, y0 + 1 - py), (y0 + 1, py - y0)):
        for xx, wx in ((x0, x0 + 1 - px), (x0 + 1, px - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += img[:, yy, xx] * wx * wy
    return out


def _naive(value, shapes, locations, weights):
    """Loop over batch, query, head, level, point; value [N, S, H, D] -> [N, Q, H*D]."""
    n, _, heads, dim = value.shape
    _, q, _, levels, points, _ = locations.shape
    out = torch.zeros(n, q, heads * dim, dtype=value.dtype)
    starts = [0]
    for h, w in shapes[:-1]:
        starts.append(starts[-1] + h * w)
    for b in range(n):
        for qi in range(q):
            for m in range(heads):
                acc = torch.zeros(dim, dtype=value.dtype)
                for lvl, (h, w) in enumerate(shapes):
                    img = value[b, starts[lvl]:starts[lvl] + h * w, m].T.reshape(dim, h, w)
                    for p in range(points):
                        x, y = locations[b, qi, m, lvl, p].tolist()
                        acc += weights[b, qi, m, lvl, p] * _bilinear_zero_pad(img, x, y)
                out[b, qi, m * dim:(m + 1) * dim] = acc
    return out


def _starts(spatial: torch.Tensor) -> torch.Tensor:
    return torch.cat([spatial.new_zeros(1), (spatial[:, 0] * spatial[:, 1]).cumsum(0)[:-1]])


def _case(shapes=((4, 6), (3, 2), (1, 5)), n=2, q=3, heads=2, dim=3, points=2, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    s = sum(h * w for h, w in shapes)
    value = torch.randn(n, s, heads, dim, generator=g, dtype=dtype)
    # locations partly outside [0, 1] to exercise the zero padding
    loc = torch.rand(n, q, heads, len(shapes), points, 2, generator=g, dtype=dtype) * 1.4 - 0.2
    weights = torch.rand(n, q, heads, len(shapes), points, generator=g, dtype=dtype)
    spatial = torch.tensor(shapes, dtype=torch.long)
    return value, spatial, _starts(spatial), loc, weights


def test_reference_matches_naive_loop():
    value, spatial, start, loc, weights = _case()
    expected = _naive(value, spatial.tolist(), loc, weights)
    for chosen in (None, "reference"):
        got = ms_deform_attn(value, spatial, start, loc, weights, backend=chosen)
        assert got.shape == (2, 3, 2 * 3)
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)


def test_hand_computed_samples():
    # one level 2x3, one head, D=1, values 0..5 row-major
    value = torch.arange(6, dtype=torch.float64).view(1, 6, 1, 1)
    spatial, start = torch.tensor([[2, 3]]), torch.tensor([0])
    pts = [((1.5 / 3, 1.5 / 2), 4.0),          # centre of pixel (row 1, col 1)
           ((1.0 / 3, 1.0 / 2), (0 + 1 + 3 + 4) / 4),  # corner between pixels 0, 1, 3, 4
           ((0.0, 1.5 / 2), 0.5 * 3.0),        # left edge of row 1: half pixel 3, half zero padding
           ((1.2, 0.5), 0.0)]                  # far outside
    loc = torch.tensor([p for p, _ in pts], dtype=torch.float64).view(1, 4, 1, 1, 1, 2)
    w = torch.ones(1, 4, 1, 1, 1, dtype=torch.float64)
    out = ms_deform_attn(value, spatial, start, loc, w)
    torch.testing.assert_close(out.view(-1), torch.tensor([v for _, v in pts], dtype=torch.float64))


def test_gradcheck():
    value, spatial, start, loc, weights = _case(shapes=((3, 4), (2, 2)), n=1, q=2, heads=2, dim=2, points=2)
    # keep samples away from pixel-centre lines, where bilinear interpolation has kinks
    loc = loc.clamp(0.05, 0.95) + 0.01
    for t in (value, loc, weights):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v, l, w: ms_deform_attn(v, spatial, start, l, w),
                                    (value, loc, weights), atol=1e-7)


def test_shape_errors():
    value, spatial, start, loc, weights = _case(dtype=torch.float32)
    with pytest.raises(ValueError, match=r"S=34 .*sum\(H_l\*W_l\)=35"):
        ms_deform_attn(value[:, 1:], spatial, start, loc, weights)
    with pytest.raises(ValueError, match="value must be"):
        ms_deform_attn(value.flatten(2), spatial, start, loc, weights)
    with pytest.raises(ValueError, match="level_start_index"):
        ms_deform_attn(value, spatial, start + 1, loc, weights)
    with pytest.raises(ValueError, match="level_start_index"):
        ms_deform_attn(value, spatial, start[:2], loc, weights)
    with pytest.raises(ValueError, match="sampling_locations"):
        ms_deform_attn(value, spatial, start, loc[:1], weights[:1])
    with pytest.raises(ValueError, match="attention_weights"):
        ms_deform_attn(value, spatial, start, loc, weights[..., :1])


def test_dispatch_reference_only(monkeypatch):
    monkeypatch.setattr(dispatch, "_extension", lambda: None)  # as if the extension were not built
    assert backend() == "reference"
    assert backend("cpu") == "reference"
    value, spatial, start, loc, weights = _case(dtype=torch.float32)
    with pytest.raises(RuntimeError, match="backend 'cuda' is not available"):
        ms_deform_attn(value, spatial, start, loc, weights, backend="cuda")
    with pytest.raises(RuntimeError, match="backend 'cpu' is not available"):
        ms_deform_attn(value, spatial, start, loc, weights, backend="cpu")
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        ms_deform_attn(value, spatial, start, loc, weights, backend="tpu")


def test_dispatch_uses_a_plugged_in_kernel(monkeypatch):
    """The hook for the compiled extension: forward and backward reach the kernel functions."""
    calls = []

    def fwd(value, shapes, starts, loc, weights):
        calls.append("forward")
        return ms_deform_attn_reference(value, shapes, loc, weights)

    def bwd(value, shapes, starts, loc, weights, grad_out):
        calls.append("backward")
        # kernels run below autograd (inside the registered operator): differentiate with torch.func instead
        _, vjp = torch.func.vjp(lambda v, loc_, w: ms_deform_attn_reference(v, shapes, loc_, w), value, loc, weights)
        return vjp(grad_out)

    fake = SimpleNamespace(ms_deform_attn_cpu_forward=fwd, ms_deform_attn_cpu_backward=bwd)
    monkeypatch.setattr(dispatch, "_extension", lambda: fake)
    monkeypatch.delenv(dispatch.FORCE_REFERENCE_ENV, raising=False)
    assert backend("cpu") == "cpu"
    assert backend("cuda") == "reference"  # the fake has no CUDA kernel

    value, spatial, start, loc, weights = _case()
    inputs = [t.clone().requires_grad_(True) for t in (value, loc, weights)]
    out = ms_deform_attn(inputs[0], spatial, start, inputs[1], inputs[2])
    out.square().sum().backward()
    assert calls == ["forward", "backward"]
    ref_inputs = [t.clone().requires_grad_(True) for t in (value, loc, weights)]
    ref = ms_deform_attn(ref_inputs[0], spatial, start, ref_inputs[1], ref_inputs[2], backend="reference")
    ref.square().sum().backward()
    torch.testing.assert_close(out, ref)
    for a, b in zip(inputs, ref_inputs):
        torch.testing.assert_close(a.grad, b.grad)

    monkeypatch.setenv(dispatch.FORCE_REFERENCE_ENV, "1")
    assert backend("cpu") == "reference"


@pytest.mark.parametrize("failure, message", [
    (OSError("undefined symbol: _ZN3c10"), "failed to load"),
    (ModuleNotFoundError("No module named 'mask2former_rankseg._C'", name="mask2former_rankseg._C"), "is not built"),
])
def test_missing_or_broken_extension_falls_back(monkeypatch, caplog, failure, message):
    def import_module(name):
        raise failure

    dispatch._extension.cache_clear()
    monkeypatch.setattr(dispatch.importlib, "import_module", import_module)
    try:
        with caplog.at_level(logging.INFO, logger=dispatch.__name__):
            assert backend() == "reference"
            assert backend("cpu") == "reference"
            value, spatial, start, loc, weights = _case()
            out = ms_deform_attn(value, spatial, start, loc, weights)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and message in warnings[0].getMessage()  # one warning, however often used
        torch.testing.assert_close(out, _naive(value, spatial.tolist(), loc, weights))
    finally:
        dispatch._extension.cache_clear()


def _identity_attn(d_model=4, n_levels=2, n_heads=2, n_points=2):
    attn = MSDeformAttn(d_model=d_model, n_levels=n_levels, n_heads=n_heads, n_points=n_points).double()
    with torch.no_grad():
        for lin in (attn.value_proj, attn.output_proj):
            lin.weight.copy_(torch.eye(d_model))
    return attn


def test_module_init_and_uniform_weights():
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=4, n_points=3)
    names = {n for n, _ in attn.named_parameters()}
    assert names == {f"{m}.{p}" for m in ("sampling_offsets", "attention_weights", "value_proj", "output_proj")
                     for p in ("weight", "bias")}
    assert attn.sampling_offsets.weight.shape == (4 * 2 * 3 * 2, 16)
    assert attn.attention_weights.weight.shape == (4 * 2 * 3, 16)
    # initial offsets: head h points along angle 2*pi*h/H (scaled so max |coord| = 1), point p at distance p+1
    bias = attn.sampling_offsets.bias.view(4, 2, 3, 2)
    torch.testing.assert_close(bias[0, 1], torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]))
    torch.testing.assert_close(bias[1, 0], torch.tensor([[0.0, 1.0], [0.0, 2.0], [0.0, 3.0]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(bias[2, 0, 1], torch.tensor([-2.0, 0.0]), atol=1e-6, rtol=0)
    assert not attn.attention_weights.weight.any() and not attn.attention_weights.bias.any()
    assert not attn.value_proj.bias.any() and not attn.output_proj.bias.any()

    # zero-init attention weights -> uniform 1/(L*P); identity projections -> output = mean of the samples
    attn = _identity_attn()
    spatial = torch.tensor([[3, 4], [2, 2]])
    start = _starts(spatial)
    x = torch.randn(1, 16, 4, dtype=torch.float64)
    ref = torch.rand(1, 5, 2, 2, dtype=torch.float64)
    out = attn(torch.randn(1, 5, 4, dtype=torch.float64), ref, x, spatial, start)
    assert out.shape == (1, 5, 4)
    offsets = attn.sampling_offsets.bias.detach().view(2, 2, 2, 2)  # [H, L, P, 2] in pixels of each level
    wh = spatial.flip(-1).double()  # (W, H) per level
    loc = ref[:, :, None, :, None, :] + offsets[None, None] / wh[None, None, None, :, None, :]
    expected = _naive(x.view(1, 16, 2, 2), spatial.tolist(), loc, torch.full((1, 5, 2, 2, 2), 0.25,
                                                                             dtype=torch.float64))
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)


def test_module_box_reference_points_and_padding_mask():
    attn = _identity_attn()
    spatial = torch.tensor([[3, 4], [2, 2]])
    start = _starts(spatial)
    x = torch.randn(2, 16, 4, dtype=torch.float64)
    query = torch.randn(2, 3, 4, dtype=torch.float64)
    boxes = torch.cat([torch.rand(2, 3, 2, 2), torch.rand(2, 3, 2, 2) * 0.5], -1).double()  # (cx, cy, w, h)
    out = attn(query, boxes, x, spatial, start)
    # boxes: location = centre + offset / P * (w, h) / 2
    offsets = attn.sampling_offsets.bias.detach().view(2, 2, 2, 2)
    loc = boxes[:, :, None, :, None, :2] + offsets[None, None] / 2 * boxes[:, :, None, :, None, 2:] * 0.5
    expected = _naive(x.view(2, 16, 2, 2), spatial.tolist(), loc, torch.full((2, 3, 2, 2, 2), 0.25,
                                                                            dtype=torch.float64))
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)

    # padded positions contribute zero values (not value_proj's bias): all padded -> output_proj's bias
    with torch.no_grad():
        attn.value_proj.bias.fill_(3.0)
        attn.output_proj.bias.copy_(torch.tensor([1.0, -2.0, 0.5, 4.0]))
    points = torch.rand(2, 3, 2, 2, dtype=torch.float64)
    out = attn(query, points, x, spatial, start, torch.ones(2, 16, dtype=torch.bool))
    torch.testing.assert_close(out, attn.output_proj.bias.detach().expand(2, 3, 4))


def test_module_errors():
    with pytest.raises(ValueError, match="divisible"):
        MSDeformAttn(d_model=10, n_heads=4)
    attn = MSDeformAttn(d_model=8, n_levels=2, n_heads=2, n_points=1)
    x = torch.randn(1, 16 + 4, 8)
    spatial = torch.tensor([[4, 4], [2, 2]])
    with pytest.raises(ValueError, match="n_levels=2"):
        attn(x, torch.rand(1, 20, 3, 2), x, torch.tensor([[4, 4], [2, 2], [1, 1]]), torch.tensor([0, 16, 20]))
    with pytest.raises(ValueError, match="2 \\(points\\) or 4 \\(boxes\\)"):
        attn(x, torch.rand(1, 20, 2, 3), x, spatial, _starts(spatial))
    with pytest.raises(ValueError, match="reference_points must be"):
        attn(x, torch.rand(1, 19, 2, 2), x, spatial, _starts(spatial))
    with pytest.raises(ValueError, match="S=19"):
        attn(x, torch.rand(1, 20, 2, 2), x[:, 1:], spatial, _starts(spatial))
