// Argument checks shared by the CPU and CUDA entry points.
#include "ms_deform_attn.h"

#include <ATen/OpMathType.h>

namespace mask2former_rankseg {

namespace {

void check_tensor(const char* where, const char* name, const at::Tensor& t, int64_t dim,
                  c10::DeviceType device_type) {
  TORCH_CHECK(t.dim() == dim, where, ": ", name, " must have ", dim, " dimensions, got shape ", t.sizes(), ".");
  TORCH_CHECK(t.device().type() == device_type, where, ": ", name, " must be on ", device_type, ", got ",
              t.device(), ".");
  TORCH_CHECK(t.is_contiguous(), where, ": ", name, " must be contiguous.");
}

}  // namespace

void check_ms_deform_attn_inputs(const char* where, c10::DeviceType device_type, const at::Tensor& value,
                                 const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                                 const at::Tensor& sampling_locations, const at::Tensor& attention_weights,
                                 const at::Tensor* grad_output) {
  check_tensor(where, "value", value, 4, device_type);
  check_tensor(where, "spatial_shapes", spatial_shapes, 2, device_type);
  check_tensor(where, "level_start_index", level_start_index, 1, device_type);
  check_tensor(where, "sampling_locations", sampling_locations, 6, device_type);
  check_tensor(where, "attention_weights", attention_weights, 5, device_type);
  const auto dtype = value.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16, where,
              ": value must be float32, float64, float16 or bfloat16, got ", dtype, ".");
  const auto acc = at::toOpMathType(dtype);
  TORCH_CHECK(sampling_locations.scalar_type() == acc && attention_weights.scalar_type() == acc, where,
              ": sampling_locations and attention_weights must be ", acc, " for ", dtype, " values, got ",
              sampling_locations.scalar_type(), " and ", attention_weights.scalar_type(), ".");
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong && level_start_index.scalar_type() == at::kLong, where,
              ": spatial_shapes and level_start_index must be int64.");
  const int64_t levels = spatial_shapes.size(0);
  TORCH_CHECK(spatial_shapes.size(1) == 2 && level_start_index.size(0) == levels, where,
              ": spatial_shapes must be [L, 2] and level_start_index [L], got ", spatial_shapes.sizes(), " and ",
              level_start_index.sizes(), ".");
  const int64_t n = value.size(0), heads = value.size(2), channels = value.size(3);
  TORCH_CHECK(sampling_locations.size(0) == n && sampling_locations.size(2) == heads &&
                  sampling_locations.size(3) == levels && sampling_locations.size(5) == 2,
              where, ": sampling_locations must be [N, Q, H, L, P, 2] = [", n, ", Q, ", heads, ", ", levels,
              ", P, 2], got ", sampling_locations.sizes(), ".");
  TORCH_CHECK(attention_weights.sizes() == sampling_locations.sizes().slice(0, 5), where,
              ": attention_weights must be [N, Q, H, L, P] = ", sampling_locations.sizes().slice(0, 5), ", got ",
              attention_weights.sizes(), ".");
  if (grad_output != nullptr) {
    check_tensor(where, "grad_output", *grad_output, 3, device_type);
    TORCH_CHECK(grad_output->scalar_type() == dtype, where, ": grad_output must be ", dtype, ", got ",
                grad_output->scalar_type(), ".");
    TORCH_CHECK(grad_output->size(0) == n && grad_output->size(1) == sampling_locations.size(1) &&
                    grad_output->size(2) == heads * channels,
                where, ": grad_output must be [N, Q, H*D] = [", n, ", ", sampling_locations.size(1), ", ",
                heads * channels, "], got ", grad_output->sizes(), ".");
  }
  const auto device = value.device();
  for (const at::Tensor* t : {&spatial_shapes, &level_start_index, &sampling_locations, &attention_weights}) {
    TORCH_CHECK(t->device() == device, where, ": all inputs must be on ", device, ", got one on ", t->device(),
                ".");
  }
}

}  // namespace mask2former_rankseg
