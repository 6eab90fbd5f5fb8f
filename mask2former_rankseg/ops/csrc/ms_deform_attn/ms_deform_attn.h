// Multi-scale deformable attention kernels: entry points of the compiled extension.
//
// Shapes (all tensors contiguous):
//   value               [N, S, H, D]     float32, float64, float16 or bfloat16 (scalar_t)
//   spatial_shapes      [L, 2]           int64, (H_l, W_l) of each level
//   level_start_index   [L]              int64, offset of each level in S
//   sampling_locations  [N, Q, H, L, P, 2] (x, y) in [0, 1]; dtype opmath(scalar_t): float32 for 16-bit values
//   attention_weights   [N, Q, H, L, P]    dtype opmath(scalar_t)
//   output, grad_output [N, Q, H * D]    scalar_t
// The backward returns (grad_value [scalar_t], grad_sampling_locations, grad_attention_weights [opmath]).
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace mask2former_rankseg {

using MSDeformAttnGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

// The sizes a kernel loops over (N, S, H, D of value; Q, L, P of sampling_locations).
struct MSDeformAttnSizes {
  int64_t batch, positions, heads, channels, queries, levels, points;

  static MSDeformAttnSizes of(const at::Tensor& value, const at::Tensor& sampling_locations) {
    return {value.size(0), value.size(1), value.size(2), value.size(3), sampling_locations.size(1),
            sampling_locations.size(3), sampling_locations.size(4)};
  }
};

// Validates dtypes, devices, ranks and the shape relations between the arguments (not the values of
// spatial_shapes, which the Python entry point checks without a device synchronisation in the kernel).
void check_ms_deform_attn_inputs(const char* where, c10::DeviceType device_type, const at::Tensor& value,
                                 const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                                 const at::Tensor& sampling_locations, const at::Tensor& attention_weights,
                                 const at::Tensor* grad_output);

at::Tensor ms_deform_attn_cpu_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights);

MSDeformAttnGrads ms_deform_attn_cpu_backward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                              const at::Tensor& level_start_index,
                                              const at::Tensor& sampling_locations,
                                              const at::Tensor& attention_weights, const at::Tensor& grad_output);

#ifdef WITH_CUDA
at::Tensor ms_deform_attn_cuda_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                       const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                                       const at::Tensor& attention_weights);

MSDeformAttnGrads ms_deform_attn_cuda_backward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                               const at::Tensor& level_start_index,
                                               const at::Tensor& sampling_locations,
                                               const at::Tensor& attention_weights, const at::Tensor& grad_output);
#endif

}  // namespace mask2former_rankseg
