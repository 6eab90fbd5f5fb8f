// Python bindings of the compiled kernels (module mask2former_rankseg._C). The autograd wrapper, input
// checks against spatial_shapes and the backend choice live in mask2former_rankseg/ops/dispatch.py.
#include <torch/extension.h>

#include "ms_deform_attn/ms_deform_attn.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace ms = mask2former_rankseg;
  m.doc() = "Compiled multi-scale deformable attention kernels of mask2former_rankseg.";
  m.def("ms_deform_attn_cpu_forward", &ms::ms_deform_attn_cpu_forward,
        "Multi-scale deformable attention, CPU forward -> [N, Q, H*D]", py::arg("value"), py::arg("spatial_shapes"),
        py::arg("level_start_index"), py::arg("sampling_locations"), py::arg("attention_weights"));
  m.def("ms_deform_attn_cpu_backward", &ms::ms_deform_attn_cpu_backward,
        "Multi-scale deformable attention, CPU backward -> (grad_value, grad_sampling_locations, "
        "grad_attention_weights)",
        py::arg("value"), py::arg("spatial_shapes"), py::arg("level_start_index"), py::arg("sampling_locations"),
        py::arg("attention_weights"), py::arg("grad_output"));
#ifdef WITH_CUDA
  m.def("ms_deform_attn_cuda_forward", &ms::ms_deform_attn_cuda_forward,
        "Multi-scale deformable attention, CUDA forward -> [N, Q, H*D]", py::arg("value"), py::arg("spatial_shapes"),
        py::arg("level_start_index"), py::arg("sampling_locations"), py::arg("attention_weights"));
  m.def("ms_deform_attn_cuda_backward", &ms::ms_deform_attn_cuda_backward,
        "Multi-scale deformable attention, CUDA backward -> (grad_value, grad_sampling_locations, "
        "grad_attention_weights)",
        py::arg("value"), py::arg("spatial_shapes"), py::arg("level_start_index"), py::arg("sampling_locations"),
        py::arg("attention_weights"), py::arg("grad_output"));
#endif
  m.attr("with_cuda") = py::bool_(
#ifdef WITH_CUDA
      true
#else
      false
#endif
  );
}
