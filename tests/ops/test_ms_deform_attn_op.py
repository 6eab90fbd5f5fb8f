"""The registered operator ``mask2former_rankseg::ms_deform_attn``: opcheck, values against the reference,
torch.compile without graph breaks, torch.export as one node."""

from __future__ import annotations

import pytest
import torch

from mask2former_rankseg.ops import MSDeformAttn, dispatch, ms_deform_attn, ms_deform_attn_reference

CPU_KERNEL = dispatch._kernels("cpu") is not None
CUDA_KERNEL = torch.cuda.is_available() and dispatch._kernels("cuda") is not None
needs_cpu_kernel = pytest.mark.skipif(not CPU_KERNEL, reason="compiled CPU kernel not built "
                                      "(pip install --no-build-isolation -e .)")
needs_cuda_kernel = pytest.mark.skipif(not CUDA_KERNEL, reason="needs a GPU and the CUDA kernel (FORCE_CUDA=1 build)")

OP = torch.ops.mask2former_rankseg.ms_deform_attn.default
BACKWARD_OP = torch.ops.mask2former_rankseg.ms_deform_attn_backward.default
# the four opcheck tests (the default ones): schema, autograd registration, fake tensor, AOT dispatch (dynamic)
OPCHECK_TESTS = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
SHAPES = ((4, 6), (3, 2), (1, 5))


def _case(dtype=torch.float64, device="cpu", n=2, q=3, heads=2, dim=3, points=2, shapes=SHAPES, loc_dtype=None):
    """Inputs as the operator takes them (locations/weights in ``loc_dtype``, default ``dtype``) and a grad_output."""
    g = torch.Generator().manual_seed(0)
    spatial = torch.tensor(shapes, dtype=torch.long)
    sizes = [h * w for h, w in shapes]
    start = torch.tensor([sum(sizes[:i]) for i in range(len(sizes))], dtype=torch.long)
    value = torch.randn(n, sum(sizes), heads, dim, generator=g, dtype=torch.float64)
    # locations partly outside [0, 1] (zero padding), kept off pixel-centre lines where bilinear sampling has kinks
    loc = torch.rand(n, q, heads, len(shapes), points, 2, generator=g, dtype=torch.float64) * 1.2 - 0.1 + 0.003
    weights = torch.rand(n, q, heads, len(shapes), points, generator=g, dtype=torch.float64)
    grad_out = torch.randn(n, q, heads * dim, generator=g, dtype=torch.float64)
    loc_dtype = loc_dtype or dtype
    return (value.to(device, dtype), spatial.to(device), start.to(device), loc.to(device, loc_dtype),
            weights.to(device, loc_dtype), grad_out.to(device, dtype))


def _grad_leaves(value, loc, weights):
    return [t.detach().clone().requires_grad_(True) for t in (value, loc, weights)]


def test_op_is_registered_with_its_schema():
    assert str(OP._schema) == (
        "mask2former_rankseg::ms_deform_attn(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
        "Tensor sampling_locations, Tensor attention_weights) -> Tensor")
    assert str(BACKWARD_OP._schema) == (
        "mask2former_rankseg::ms_deform_attn_backward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
        "Tensor sampling_locations, Tensor attention_weights, Tensor grad_output) -> (Tensor, Tensor, Tensor)")
    # a CPU implementation always (it says so when the extension is missing); a CUDA one only with the CUDA kernel
    for name in (OP.name(), BACKWARD_OP.name()):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(name, "CPU")
        assert torch._C._dispatch_has_kernel_for_dispatch_key(name, "CUDA") == (dispatch._kernels("cuda") is not None)


def test_op_without_the_extension_says_so(monkeypatch):
    monkeypatch.setattr(dispatch, "_extension", lambda: None)
    value, spatial, start, loc, weights, grad_out = _case()
    with pytest.raises(RuntimeError, match=r"mask2former_rankseg._C is not built or has no cpu kernel"):
        OP(value, spatial, start, loc, weights)
    with pytest.raises(RuntimeError, match=r"mask2former_rankseg._C is not built or has no cpu kernel"):
        BACKWARD_OP(value, spatial, start, loc, weights, grad_out)
    # ms_deform_attn itself falls back to the reference
    torch.testing.assert_close(ms_deform_attn(value, spatial, start, loc, weights),
                               ms_deform_attn_reference(value, spatial, loc, weights))


def test_fake_shapes_and_dtypes():
    """The fake implementations give [N, Q, H*D] in value's dtype, and each gradient like its input."""
    value, spatial, start, loc, weights, grad_out = _case(dtype=torch.bfloat16, loc_dtype=torch.float32, q=5)
    with torch._subclasses.fake_tensor.FakeTensorMode() as mode:
        fake = [mode.from_tensor(t) for t in (value, spatial, start, loc, weights, grad_out)]
        out = OP(*fake[:5])
        grads = BACKWARD_OP(*fake)
    assert (tuple(out.shape), out.dtype) == ((2, 5, 2 * 3), torch.bfloat16)
    assert [(tuple(g.shape), g.dtype) for g in grads] == [
        ((2, 35, 2, 3), torch.bfloat16), ((2, 5, 2, 3, 2, 2), torch.float32), ((2, 5, 2, 3, 2), torch.float32)]


@needs_cpu_kernel
@pytest.mark.parametrize("dtype, loc_dtype", [(torch.float64, None), (torch.float32, None),
                                              (torch.bfloat16, torch.float32)])
def test_opcheck_cpu(dtype, loc_dtype):
    value, spatial, start, loc, weights, grad_out = _case(dtype=dtype, loc_dtype=loc_dtype)
    value, loc, weights = _grad_leaves(value, loc, weights)
    results = torch.library.opcheck(OP, (value, spatial, start, loc, weights), test_utils=OPCHECK_TESTS)
    assert results == {name: "SUCCESS" for name in OPCHECK_TESTS}
    # the backward operator on its own (no autograd formula: it is not differentiated again)
    results = torch.library.opcheck(BACKWARD_OP, _case(dtype=dtype, loc_dtype=loc_dtype), test_utils=OPCHECK_TESTS)
    assert results == {name: "SUCCESS" for name in OPCHECK_TESTS}


@needs_cuda_kernel
def test_opcheck_cuda():
    value, spatial, start, loc, weights, grad_out = _case(dtype=torch.float32, device="cuda")
    value, loc, weights = _grad_leaves(value, loc, weights)
    results = torch.library.opcheck(OP, (value, spatial, start, loc, weights), test_utils=OPCHECK_TESTS)
    assert results == {name: "SUCCESS" for name in OPCHECK_TESTS}
    results = torch.library.opcheck(BACKWARD_OP, _case(dtype=torch.float32, device="cuda"),
                                    test_utils=OPCHECK_TESTS)
    assert results == {name: "SUCCESS" for name in OPCHECK_TESTS}


@needs_cpu_kernel
def test_op_matches_reference_forward_and_backward():
    value, spatial, start, loc, weights, grad_out = _case()
    leaves = _grad_leaves(value, loc, weights)
    out = OP(leaves[0], spatial, start, leaves[1], leaves[2])
    out.backward(grad_out)
    ref_leaves = _grad_leaves(value, loc, weights)
    ref = ms_deform_attn_reference(ref_leaves[0], spatial, ref_leaves[1], ref_leaves[2])
    ref.backward(grad_out)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    for got, expected in zip(leaves, ref_leaves):
        torch.testing.assert_close(got.grad, expected.grad, atol=1e-11, rtol=0)
    # the backward operator gives the same three gradients directly
    direct = BACKWARD_OP(value, spatial, start, loc, weights, grad_out)
    for got, expected in zip(direct, ref_leaves):
        torch.testing.assert_close(got, expected.grad, atol=1e-11, rtol=0)


@needs_cpu_kernel
def test_op_gradcheck_float64():
    value, spatial, start, loc, weights, _ = _case(n=1, q=2, shapes=((3, 4), (2, 2)))
    leaves = _grad_leaves(value, loc, weights)
    assert torch.autograd.gradcheck(lambda v, l, a: OP(v, spatial, start, l, a), leaves, atol=1e-7)


@needs_cpu_kernel
def test_dispatch_goes_through_the_op():
    """The kernel backend of ms_deform_attn is the registered operator (it shows in the autograd graph)."""
    value, spatial, start, loc, weights, _ = _case()
    leaves = _grad_leaves(value, loc, weights)
    out = ms_deform_attn(leaves[0], spatial, start, leaves[1], leaves[2], backend="cpu")
    assert out.grad_fn.name() == "GeneratedBackwardFor_mask2former_rankseg_ms_deform_attn_defaultBackward"
    torch.testing.assert_close(out, ms_deform_attn_reference(value, spatial, loc, weights), atol=1e-12, rtol=0)


def _module_inputs(dtype=torch.float32):
    """A 2-level MSDeformAttn (C=8, 2 heads) and its inputs."""
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=8, n_levels=2, n_heads=2, n_points=2).to(dtype)
    with torch.no_grad():  # non-zero weights so that every path of the module matters
        attn.sampling_offsets.weight.normal_(0, 0.3)
        attn.attention_weights.weight.normal_(0, 0.3)
    spatial = torch.tensor([[4, 5], [2, 3]])
    start = torch.tensor([0, 20])
    query = torch.randn(2, 6, 8, dtype=dtype)
    points = torch.rand(2, 6, 2, 2, dtype=dtype)
    x = torch.randn(2, 26, 8, dtype=dtype)
    return attn, (query, points, x, spatial, start)


@needs_cpu_kernel
def test_compile_fullgraph_function_forward_and_backward():
    """fullgraph=True: no graph break in the forward nor (through the registered backward) in the backward."""
    value, spatial, start, loc, weights, grad_out = _case(dtype=torch.float32)

    def fn(v, l, a):
        return (ms_deform_attn(v.tanh(), spatial, start, l.clamp(0, 1), a.softmax(-1)) * 2).sum(-1)

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    leaves, eager_leaves = _grad_leaves(value, loc, weights), _grad_leaves(value, loc, weights)
    out, expected = compiled(*leaves), fn(*eager_leaves)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
    out.square().sum().backward()
    expected.square().sum().backward()
    for got, want in zip(leaves, eager_leaves):
        torch.testing.assert_close(got.grad, want.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.slow  # inductor's CPU code generation: ~30 s on two cores when its cache is cold
@needs_cpu_kernel
def test_compile_module_no_graph_breaks_matches_eager():
    attn, inputs = _module_inputs()
    explained = torch._dynamo.explain(attn)(*inputs)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    torch._dynamo.reset()
    compiled = torch.compile(attn, fullgraph=True)  # inductor on the CPU around the operator
    with torch.no_grad():
        torch.testing.assert_close(compiled(*inputs), attn(*inputs), atol=1e-5, rtol=1e-5)


@needs_cpu_kernel
def test_export_module_keeps_one_op_node():
    attn, inputs = _module_inputs()
    exported = torch.export.export(attn, inputs)
    targets = [node.target for node in exported.graph.nodes if node.op == "call_function"]
    assert targets.count(OP) == 1
    assert BACKWARD_OP not in targets
    torch.testing.assert_close(exported.module()(*inputs), attn(*inputs), atol=1e-6, rtol=1e-6)
