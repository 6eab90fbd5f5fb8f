"""Multi-scale deformable attention: reference vs a naive loop, gradients, dispatch, the module."""

import pytest
import torch

from mask2former_rankseg.ops import MSDeformAttn, backend, ms_deform_attn, ms_deform_attn_reference


def _bilinear_zero_pad(img: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """img [D, H, W]; (x, y) in [0, 1] with align_corners=False; zero outside."""
    d, h, w = img.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = int(torch.floor(torch.tensor(px))), int(torch.floor(torch.tensor(py)))
    out = torch.zeros(d, dtype=img.dtype)
    for yy, wy in ((y0, y0 + 1 - py), (y0 + 1, py - y0)):
        for xx, wx in ((x0, x0 + 1 - px), (x0 + 1, px - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += img[:, yy, xx] * wx * wy
    return out


def _naive(value, shapes, locations, weights):
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


def _case(shapes=((4, 6), (3, 2), (1, 5)), n=2, q=3, heads=2, dim=3, points=2, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    s = sum(h * w for h, w in shapes)
    value = torch.randn(n, s, heads, dim, generator=g, dtype=dtype)
    # locations partly outside [0, 1] to exercise the zero padding
    loc = torch.rand(n, q, heads, len(shapes), points, 2, generator=g, dtype=dtype) * 1.4 - 0.2
    weights = torch.rand(n, q, heads, len(shapes), points, generator=g, dtype=dtype)
    spatial = torch.tensor(shapes, dtype=torch.long)
    start = torch.cat([spatial.new_zeros(1), (spatial[:, 0] * spatial[:, 1]).cumsum(0)[:-1]])
    return value, spatial, start, loc, weights


def test_reference_matches_naive_loop():
    value, spatial, start, loc, weights = _case()
    expected = _naive(value, spatial.tolist(), loc, weights)
    got = ms_deform_attn(value, spatial, start, loc, weights)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)


def test_gradcheck():
    value, spatial, _, loc, weights = _case(shapes=((3, 4), (2, 2)), n=1, q=2, heads=1, dim=2, points=2)
    loc = loc.clamp(0.05, 0.95)  # keep away from the kinks at the borders
    for t in (value, loc, weights):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v, l, w: ms_deform_attn_reference(v, spatial, l, w),
                                    (value, loc, weights), atol=1e-6)


def test_dispatch_and_shape_errors():
    assert backend() == "reference"
    value, spatial, start, loc, weights = _case(dtype=torch.float32)
    with pytest.raises(ValueError, match="S="):
        ms_deform_attn(value[:, 1:], spatial, start, loc, weights)
    with pytest.raises(ValueError, match="attention_weights"):
        ms_deform_attn(value, spatial, start, loc, weights[..., :1])
    with pytest.raises(RuntimeError, match="not available"):
        ms_deform_attn(value, spatial, start, loc, weights, backend="cuda")
    with pytest.raises(ValueError, match="Unknown"):
        ms_deform_attn(value, spatial, start, loc, weights, backend="tpu")


def test_module_shapes_init_and_uniform_weights():
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=4, n_points=3)
    assert {n for n, _ in attn.named_parameters()} >= {
        "sampling_offsets.weight", "attention_weights.weight", "value_proj.weight", "output_proj.weight"}
    # initial offsets: head h points along its direction at distances 1..P
    bias = attn.sampling_offsets.bias.view(4, 2, 3, 2)
    torch.testing.assert_close(bias[0, 0, :, 0], torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(bias[1, 1, :, 1], torch.tensor([1.0, 2.0, 3.0]))
    spatial = torch.tensor([[4, 4], [2, 2]])
    start = torch.tensor([0, 16])
    x = torch.randn(2, 20, 16)
    ref = torch.rand(2, 20, 2, 2)
    out = attn(x, ref, x, spatial, start)
    assert out.shape == (2, 20, 16)
    with pytest.raises(ValueError, match="divisible"):
        MSDeformAttn(d_model=10, n_heads=4)
