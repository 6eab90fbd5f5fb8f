// CPU kernel of multi-scale deformable attention (bilinear sampling from ms_deform_attn_common.h).
//
// Forward: parallel over batch x heads x queries; each task writes its own D output channels.
// Backward: the value gradient is a scatter, so a task is a (batch, head) pair with a range of queries,
// writing a disjoint slice of grad_sampling_locations and grad_attention_weights and its own copy of the
// pair's grad_value slice: no atomics. When batch x heads >= threads each pair is one task with one copy,
// and results are the same bits whatever the number of threads; otherwise the queries are split into
// chunks (batch x heads x chunks >= threads) whose grad_value copies are summed at the end.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "ms_deform_attn.h"
#include "ms_deform_attn_common.h"

// x86-64-v3 (AVX2, FMA) and -v4 (AVX-512) clones need GCC >= 12 or Clang >= 14; older compilers build the
// baseline only.
#if defined(__x86_64__) && defined(__linux__) && !defined(M2FR_NO_CPU_CLONES) && \
    ((defined(__clang__) && __clang_major__ >= 14) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 12))
#define M2FR_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define M2FR_CPU_CLONES
#endif
#if defined(__GNUC__) || defined(__clang__)
#define M2FR_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define M2FR_ALWAYS_INLINE inline
#endif

namespace mask2former_rankseg {

namespace {

using Sizes = MSDeformAttnSizes;

struct AddInPlace {
  template <typename T>
  void operator()(T* target, T amount) const {
    *target += amount;
  }
};

// acc[d] += weight * sample[d] over the channels of one sample (vectorised: no branches when kAllInside).
template <bool kAllInside, typename scalar_t, typename acc_t>
M2FR_ALWAYS_INLINE void accumulate_sample(acc_t* acc, const scalar_t* level, int64_t position_stride,
                              const msda::BilinearFootprint<acc_t>& f, acc_t weight, int64_t channels) {
#pragma omp simd
  for (int64_t d = 0; d < channels; ++d) {
    acc[d] += weight * msda::bilinear_sample<kAllInside>(level + d, position_stride, f);
  }
}

// Gradients of one sample: scatters into grad_level, returns dL/d(loc_x), dL/d(loc_y), dL/d(weight) summed
// over the channels (a reordered, vectorised sum; the same order at every call, so results are repeatable).
template <bool kAllInside, typename scalar_t, typename acc_t>
M2FR_ALWAYS_INLINE void backward_sample(const scalar_t* level, acc_t* grad_level, int64_t position_stride,
                            const msda::BilinearFootprint<acc_t>& f, acc_t weight, const acc_t* grad_out,
                            int64_t channels, acc_t* grad_loc, acc_t* grad_weight) {
  acc_t grad_x = 0, grad_y = 0, grad_a = 0;
#pragma omp simd reduction(+ : grad_x, grad_y, grad_a)
  for (int64_t d = 0; d < channels; ++d) {
    const acc_t sample = msda::bilinear_sample_backward<kAllInside>(
        level + d, grad_level + d, position_stride, f, grad_out[d] * weight, grad_x, grad_y, AddInPlace{});
    grad_a += grad_out[d] * sample;
  }
  grad_loc[0] = grad_x;
  grad_loc[1] = grad_y;
  *grad_weight = grad_a;
}

// Everything a kernel reads and writes; sizes plus raw pointers (grad pointers null in the forward).
template <typename scalar_t>
struct KernelArgs {
  using acc_t = at::opmath_type<scalar_t>;
  Sizes s;
  const scalar_t* value;
  const int64_t* shapes;
  const int64_t* starts;
  const acc_t* locations;
  const acc_t* weights;
  scalar_t* output;
  const scalar_t* grad_output;
  acc_t* grad_value;
  acc_t* grad_locations;
  acc_t* grad_weights;
};

// Forward of tasks [begin, end). Tasks run head-major, task == (n * H + h) * Q + q: consecutive queries of
// one head sample nearby pixels of the same value slice, which keeps the reads in cache on large maps.
// acc: D scratch values.
template <typename scalar_t>
M2FR_ALWAYS_INLINE void forward_tasks(const KernelArgs<scalar_t>& a, int64_t begin, int64_t end,
                                      at::opmath_type<scalar_t>* acc) {
  using acc_t = at::opmath_type<scalar_t>;
  const Sizes& s = a.s;
  const int64_t samples = s.levels * s.points;
  const int64_t position_stride = s.heads * s.channels;
  for (int64_t task = begin; task < end; ++task) {
    const int64_t q = task % s.queries;
    const int64_t h = (task / s.queries) % s.heads;
    const int64_t n = task / (s.queries * s.heads);
    const int64_t row = (n * s.queries + q) * s.heads + h;  // of sampling_locations, attention_weights, output
    const acc_t* loc = a.locations + row * samples * 2;
    const acc_t* attn = a.weights + row * samples;
    std::fill(acc, acc + s.channels, acc_t(0));
    for (int64_t l = 0; l < s.levels; ++l) {
      const scalar_t* level = a.value + ((n * s.positions + a.starts[l]) * s.heads + h) * s.channels;
      for (int64_t p = 0; p < s.points; ++p) {
        const int64_t k = l * s.points + p;
        const auto f =
            msda::bilinear_footprint<acc_t>(loc[2 * k], loc[2 * k + 1], a.shapes[2 * l], a.shapes[2 * l + 1]);
        if (!f.any_inside) continue;
        if (f.all_inside) {
          accumulate_sample<true>(acc, level, position_stride, f, attn[k], s.channels);
        } else {
          accumulate_sample<false>(acc, level, position_stride, f, attn[k], s.channels);
        }
      }
    }
    scalar_t* out = a.output + row * s.channels;
    for (int64_t d = 0; d < s.channels; ++d) out[d] = static_cast<scalar_t>(acc[d]);
  }
}

// Backward of tasks [begin, end); task = pair * chunks + chunk covers queries [chunk * Q / chunks,
// (chunk + 1) * Q / chunks) of (batch, head) pair = n * H + h and accumulates the value gradient into copy
// `chunk` of a.grad_value ([chunks, N, S, H, D]). grad_out: D scratch values.
template <typename scalar_t>
M2FR_ALWAYS_INLINE void backward_tasks(const KernelArgs<scalar_t>& a, int64_t chunks, int64_t begin, int64_t end,
                                       at::opmath_type<scalar_t>* grad_out) {
  using acc_t = at::opmath_type<scalar_t>;
  const Sizes& s = a.s;
  const int64_t samples = s.levels * s.points;
  const int64_t position_stride = s.heads * s.channels;
  const int64_t value_numel = s.batch * s.positions * position_stride;
  for (int64_t task = begin; task < end; ++task) {
    const int64_t pair = task / chunks;
    const int64_t chunk = task % chunks;
    const int64_t n = pair / s.heads;
    const int64_t h = pair % s.heads;
    acc_t* grad_value = a.grad_value + chunk * value_numel;
    for (int64_t q = chunk * s.queries / chunks; q < (chunk + 1) * s.queries / chunks; ++q) {
      const int64_t row = (n * s.queries + q) * s.heads + h;
      const acc_t* loc = a.locations + row * samples * 2;
      const acc_t* attn = a.weights + row * samples;
      acc_t* grad_loc = a.grad_locations + row * samples * 2;
      acc_t* grad_attn = a.grad_weights + row * samples;
      const scalar_t* go = a.grad_output + row * s.channels;
      for (int64_t d = 0; d < s.channels; ++d) grad_out[d] = static_cast<acc_t>(go[d]);
      for (int64_t l = 0; l < s.levels; ++l) {
        const int64_t offset = ((n * s.positions + a.starts[l]) * s.heads + h) * s.channels;
        const scalar_t* level = a.value + offset;
        acc_t* grad_level = grad_value + offset;
        for (int64_t p = 0; p < s.points; ++p) {
          const int64_t k = l * s.points + p;
          const auto f =
              msda::bilinear_footprint<acc_t>(loc[2 * k], loc[2 * k + 1], a.shapes[2 * l], a.shapes[2 * l + 1]);
          if (!f.any_inside) continue;
          if (f.all_inside) {
            backward_sample<true>(level, grad_level, position_stride, f, attn[k], grad_out, s.channels,
                                  grad_loc + 2 * k, grad_attn + k);
          } else {
            backward_sample<false>(level, grad_level, position_stride, f, attn[k], grad_out, s.channels,
                                   grad_loc + 2 * k, grad_attn + k);
          }
        }
      }
    }
  }
}

// One out-of-line entry per dtype, compiled for several instruction sets where the toolchain can pick one
// at load time (GCC/Clang function multiversioning on x86-64 Linux): AVX-512 and AVX2 machines get wider
// vectors than the baseline x86-64 build, without -march flags that would break other machines.
#define M2FR_DEFINE_CPU_ENTRIES(scalar_t)                                                                      \
  M2FR_CPU_CLONES void run_forward_tasks(const KernelArgs<scalar_t>& a, int64_t begin, int64_t end,            \
                                         at::opmath_type<scalar_t>* scratch) {                                 \
    forward_tasks<scalar_t>(a, begin, end, scratch);                                                           \
  }                                                                                                            \
  M2FR_CPU_CLONES void run_backward_tasks(const KernelArgs<scalar_t>& a, int64_t chunks, int64_t begin,        \
                                          int64_t end, at::opmath_type<scalar_t>* scratch) {                   \
    backward_tasks<scalar_t>(a, chunks, begin, end, scratch);                                                  \
  }
M2FR_DEFINE_CPU_ENTRIES(float)
M2FR_DEFINE_CPU_ENTRIES(double)
M2FR_DEFINE_CPU_ENTRIES(c10::Half)
M2FR_DEFINE_CPU_ENTRIES(c10::BFloat16)
#undef M2FR_DEFINE_CPU_ENTRIES

template <typename scalar_t>
void forward_kernel(const KernelArgs<scalar_t>& a) {
  const Sizes& s = a.s;
  const int64_t work_per_task = std::max<int64_t>(1, s.levels * s.points * 4 * s.channels);
  const int64_t grain = std::max<int64_t>(1, at::internal::GRAIN_SIZE / work_per_task);
  at::parallel_for(0, s.batch * s.heads * s.queries, grain, [&](int64_t begin, int64_t end) {
    std::vector<at::opmath_type<scalar_t>> scratch(s.channels);
    run_forward_tasks(a, begin, end, scratch.data());
  });
}

template <typename scalar_t>
void backward_kernel(const KernelArgs<scalar_t>& a, int64_t chunks) {
  at::parallel_for(0, a.s.batch * a.s.heads * chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<at::opmath_type<scalar_t>> scratch(a.s.channels);
    run_backward_tasks(a, chunks, begin, end, scratch.data());
  });
}

// Query chunks per (batch, head) pair so that every thread has a task (1 when pairs alone suffice).
int64_t backward_chunks(const Sizes& s) {
  const int64_t pairs = s.batch * s.heads;
  const int64_t threads = at::get_num_threads();
  if (pairs == 0 || pairs >= threads || s.queries < 2) return 1;
  return std::min<int64_t>(s.queries, (threads + pairs - 1) / pairs);
}

}  // namespace

at::Tensor ms_deform_attn_cpu_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights) {
  check_ms_deform_attn_inputs("ms_deform_attn_cpu_forward", c10::DeviceType::CPU, value, spatial_shapes,
                              level_start_index, sampling_locations, attention_weights, nullptr);
  const Sizes s = Sizes::of(value, sampling_locations);
  auto output = at::empty({s.batch, s.queries, s.heads * s.channels}, value.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_cpu_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    forward_kernel<scalar_t>({s, value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
                              level_start_index.data_ptr<int64_t>(), sampling_locations.data_ptr<acc_t>(),
                              attention_weights.data_ptr<acc_t>(), output.data_ptr<scalar_t>(), nullptr, nullptr,
                              nullptr, nullptr});
  });
  return output;
}

MSDeformAttnGrads ms_deform_attn_cpu_backward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                              const at::Tensor& level_start_index,
                                              const at::Tensor& sampling_locations,
                                              const at::Tensor& attention_weights, const at::Tensor& grad_output) {
  check_ms_deform_attn_inputs("ms_deform_attn_cpu_backward", c10::DeviceType::CPU, value, spatial_shapes,
                              level_start_index, sampling_locations, attention_weights, &grad_output);
  const Sizes s = Sizes::of(value, sampling_locations);
  const auto acc_dtype = at::toOpMathType(value.scalar_type());
  const int64_t chunks = backward_chunks(s);
  // One value-gradient copy per query chunk; 16-bit values accumulate in float32, rounded once at the end.
  std::vector<int64_t> copies_shape{chunks};
  copies_shape.insert(copies_shape.end(), value.sizes().begin(), value.sizes().end());
  auto grad_value_copies = at::zeros(copies_shape, value.options().dtype(acc_dtype));
  auto grad_locations = at::zeros_like(sampling_locations);
  auto grad_weights = at::zeros_like(attention_weights);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_cpu_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    backward_kernel<scalar_t>({s, value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
                               level_start_index.data_ptr<int64_t>(), sampling_locations.data_ptr<acc_t>(),
                               attention_weights.data_ptr<acc_t>(), nullptr, grad_output.data_ptr<scalar_t>(),
                               grad_value_copies.data_ptr<acc_t>(), grad_locations.data_ptr<acc_t>(),
                               grad_weights.data_ptr<acc_t>()},
                              chunks);
  });
  auto grad_value = chunks == 1 ? grad_value_copies[0] : grad_value_copies.sum(0);
  return {grad_value.to(value.scalar_type()), grad_locations, grad_weights};
}

}  // namespace mask2former_rankseg
