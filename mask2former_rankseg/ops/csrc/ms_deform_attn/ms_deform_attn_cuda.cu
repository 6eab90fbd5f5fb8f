// CUDA kernel of multi-scale deformable attention (bilinear sampling from ms_deform_attn_common.h).
//
// One warp per (batch, query, head); its lanes walk the D channels, so value reads and gradient writes
// of a corner are coalesced. The backward reduces the location and attention-weight gradients over the
// channels with warp shuffles (one writer per element, no atomics) and scatters the value gradient with
// atomic adds into a buffer of the accumulation type (float32 for 16-bit values).
// Only light CUDA headers (no ATen/cuda/CUDAContext.h, which needs the cuBLAS/cuSPARSE headers): the kernels
// build with nvcc and the CUDA runtime alone.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "ms_deform_attn.h"
#include "ms_deform_attn_common.h"

namespace mask2former_rankseg {

namespace {

constexpr int kWarpSize = 32;
constexpr int kThreadsPerBlock = 256;
constexpr int kWarpsPerBlock = kThreadsPerBlock / kWarpSize;

using Sizes = MSDeformAttnSizes;

// Gradient accumulation into float32 or float64 buffers (16-bit values accumulate in float32).
struct AtomicAdd {
  template <typename T>
  __host__ __device__ void operator()(T* target, T amount) const {
#ifdef __CUDA_ARCH__
    atomicAdd(target, amount);  // float64 atomics need sm_60, below every architecture torch supports
#else
    *target += amount;
#endif
  }
};

// Calls fn(task, lane) for this warp's tasks (grid-stride); task == (n * Q + q) * H + h, the row of
// sampling_locations, attention_weights and output. Whole warps take the same task.
template <typename Fn>
__device__ __forceinline__ void for_each_warp_task(int64_t tasks, Fn&& fn) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t task = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize; task < tasks;
       task += stride) {
    fn(task, lane);
  }
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

template <typename scalar_t>
__global__ void forward_kernel(Sizes s, const scalar_t* __restrict__ value, const int64_t* __restrict__ shapes,
                               const int64_t* __restrict__ starts,
                               const at::opmath_type<scalar_t>* __restrict__ locations,
                               const at::opmath_type<scalar_t>* __restrict__ weights, scalar_t* __restrict__ output) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t samples = s.levels * s.points;
  const int64_t position_stride = s.heads * s.channels;
  for_each_warp_task(s.batch * s.queries * s.heads, [&](int64_t task, int lane) {
    const int64_t h = task % s.heads;
    const int64_t n = task / (s.heads * s.queries);
    const acc_t* loc = locations + task * samples * 2;
    const acc_t* attn = weights + task * samples;
    for (int64_t d = lane; d < s.channels; d += kWarpSize) {
      acc_t acc = 0;
      for (int64_t l = 0; l < s.levels; ++l) {
        const scalar_t* level = value + ((n * s.positions + starts[l]) * s.heads + h) * s.channels + d;
        const int64_t height = shapes[2 * l], width = shapes[2 * l + 1];
        for (int64_t p = 0; p < s.points; ++p) {
          const int64_t k = l * s.points + p;
          const auto f = msda::bilinear_footprint<acc_t>(loc[2 * k], loc[2 * k + 1], height, width);
          if (f.all_inside) {
            acc += attn[k] * msda::bilinear_sample<true>(level, position_stride, f);
          } else if (f.any_inside) {
            acc += attn[k] * msda::bilinear_sample<false>(level, position_stride, f);
          }
        }
      }
      output[task * s.channels + d] = static_cast<scalar_t>(acc);
    }
  });
}

template <typename scalar_t>
__global__ void backward_kernel(Sizes s, const scalar_t* __restrict__ value, const int64_t* __restrict__ shapes,
                                const int64_t* __restrict__ starts,
                                const at::opmath_type<scalar_t>* __restrict__ locations,
                                const at::opmath_type<scalar_t>* __restrict__ weights,
                                const scalar_t* __restrict__ grad_output, at::opmath_type<scalar_t>* grad_value,
                                at::opmath_type<scalar_t>* __restrict__ grad_locations,
                                at::opmath_type<scalar_t>* __restrict__ grad_weights) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t samples = s.levels * s.points;
  const int64_t position_stride = s.heads * s.channels;
  // Whole warps take the same task and the same samples, so the shuffles below see all 32 lanes.
  for_each_warp_task(s.batch * s.queries * s.heads, [&](int64_t task, int lane) {
    const int64_t h = task % s.heads;
    const int64_t n = task / (s.heads * s.queries);
    const acc_t* loc = locations + task * samples * 2;
    const acc_t* attn = weights + task * samples;
    const scalar_t* go = grad_output + task * s.channels;
    for (int64_t l = 0; l < s.levels; ++l) {
      const int64_t offset = ((n * s.positions + starts[l]) * s.heads + h) * s.channels;
      const int64_t height = shapes[2 * l], width = shapes[2 * l + 1];
      for (int64_t p = 0; p < s.points; ++p) {
        const int64_t k = l * s.points + p;
        const auto f = msda::bilinear_footprint<acc_t>(loc[2 * k], loc[2 * k + 1], height, width);
        if (!f.any_inside) continue;  // grads stay zero
        const acc_t a = attn[k];
        acc_t grad_x = 0, grad_y = 0, grad_a = 0;
        for (int64_t d = lane; d < s.channels; d += kWarpSize) {
          const acc_t g = static_cast<acc_t>(go[d]);
          const scalar_t* v = value + offset + d;
          acc_t* gv = grad_value + offset + d;
          // The branch is the same for the whole warp (one footprint per warp).
          const acc_t sample =
              f.all_inside
                  ? msda::bilinear_sample_backward<true>(v, gv, position_stride, f, g * a, grad_x, grad_y, AtomicAdd{})
                  : msda::bilinear_sample_backward<false>(v, gv, position_stride, f, g * a, grad_x, grad_y,
                                                          AtomicAdd{});
          grad_a += g * sample;
        }
        grad_x = warp_sum(grad_x);
        grad_y = warp_sum(grad_y);
        grad_a = warp_sum(grad_a);
        if (lane == 0) {
          grad_locations[(task * samples + k) * 2] = grad_x;
          grad_locations[(task * samples + k) * 2 + 1] = grad_y;
          grad_weights[task * samples + k] = grad_a;
        }
      }
    }
  });
}

int64_t blocks_for(int64_t tasks) {
  const int64_t blocks = (tasks + kWarpsPerBlock - 1) / kWarpsPerBlock;
  return std::max<int64_t>(1, std::min<int64_t>(blocks, int64_t(1) << 20));  // grid-stride beyond that
}

}  // namespace

at::Tensor ms_deform_attn_cuda_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                       const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                                       const at::Tensor& attention_weights) {
  check_ms_deform_attn_inputs("ms_deform_attn_cuda_forward", c10::DeviceType::CUDA, value, spatial_shapes,
                              level_start_index, sampling_locations, attention_weights, nullptr);
  const c10::cuda::CUDAGuard guard(value.device());
  const Sizes s = Sizes::of(value, sampling_locations);
  auto output = at::empty({s.batch, s.queries, s.heads * s.channels}, value.options());
  const int64_t tasks = s.batch * s.queries * s.heads;
  if (tasks == 0 || s.channels == 0) return output.zero_();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_cuda_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    forward_kernel<scalar_t><<<blocks_for(tasks), kThreadsPerBlock, 0, stream>>>(
        s, value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(), level_start_index.data_ptr<int64_t>(),
        sampling_locations.data_ptr<acc_t>(), attention_weights.data_ptr<acc_t>(), output.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return output;
}

MSDeformAttnGrads ms_deform_attn_cuda_backward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                               const at::Tensor& level_start_index,
                                               const at::Tensor& sampling_locations,
                                               const at::Tensor& attention_weights, const at::Tensor& grad_output) {
  check_ms_deform_attn_inputs("ms_deform_attn_cuda_backward", c10::DeviceType::CUDA, value, spatial_shapes,
                              level_start_index, sampling_locations, attention_weights, &grad_output);
  const c10::cuda::CUDAGuard guard(value.device());
  const Sizes s = Sizes::of(value, sampling_locations);
  const auto acc_dtype = at::toOpMathType(value.scalar_type());
  // 16-bit values accumulate their gradient in float32 (atomics) and are rounded once at the end.
  auto grad_value = at::zeros(value.sizes(), value.options().dtype(acc_dtype));
  auto grad_locations = at::zeros_like(sampling_locations);
  auto grad_weights = at::zeros_like(attention_weights);
  const int64_t tasks = s.batch * s.queries * s.heads;
  if (tasks > 0 && s.channels > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_cuda_backward",
                                    [&] {
      using acc_t = at::opmath_type<scalar_t>;
      backward_kernel<scalar_t><<<blocks_for(tasks), kThreadsPerBlock, 0, stream>>>(
          s, value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(), level_start_index.data_ptr<int64_t>(),
          sampling_locations.data_ptr<acc_t>(), attention_weights.data_ptr<acc_t>(), grad_output.data_ptr<scalar_t>(),
          grad_value.data_ptr<acc_t>(), grad_locations.data_ptr<acc_t>(), grad_weights.data_ptr<acc_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {grad_value.to(value.scalar_type()), grad_locations, grad_weights};
}

}  // namespace mask2former_rankseg
