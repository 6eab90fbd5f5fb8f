// Bilinear sampling and its gradient scatter for multi-scale deformable attention, written once and
// compiled into both the CPU kernel (ms_deform_attn_cpu.cpp) and the CUDA kernel (ms_deform_attn_cuda.cu).
//
// Conventions (the same as grid_sample with align_corners=False, padding_mode="zeros"):
//  * a sampling location (x, y) is normalised to [0, 1] over a level of H x W pixels; 0 and 1 are the outer
//    edges of the map, pixel centres sit at ((col + 0.5) / W, (row + 0.5) / H);
//  * corners outside the map read zero and receive no gradient;
//  * one level of `value` is addressed as base[position * position_stride], position = row * W + col, where
//    base already points at the wanted (batch, level start, head, channel).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define M2FR_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define M2FR_HOST_DEVICE inline
#endif

namespace mask2former_rankseg {
namespace msda {

template <typename T>
M2FR_HOST_DEVICE T floor_value(T v) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  return floor(v);
#else
  return std::floor(v);
#endif
}

// The four pixels a bilinear sample touches: top-left, top-right, bottom-left, bottom-right.
template <typename acc_t>
struct BilinearFootprint {
  int64_t position[4];  // row * W + col of each corner (meaningful only where inside[c])
  acc_t weight[4];      // interpolation weight of each corner
  bool inside[4];       // whether the corner lies on the map
  acc_t frac_x;         // x - floor(x), in pixels
  acc_t frac_y;         // y - floor(y), in pixels
  acc_t width;          // W: d(pixel x) / d(normalised x)
  acc_t height;         // H: d(pixel y) / d(normalised y)
  bool any_inside;      // false when the whole sample falls in the zero padding
  bool all_inside;      // true when no corner falls in the zero padding (the common, branch-free case)
};

// Footprint of the normalised location (loc_x, loc_y) on a height x width map.
template <typename acc_t>
M2FR_HOST_DEVICE BilinearFootprint<acc_t> bilinear_footprint(acc_t loc_x, acc_t loc_y, int64_t height,
                                                             int64_t width) {
  BilinearFootprint<acc_t> f;
  // Pixel coordinates through grid_sample's own arithmetic (grid = 2 * loc - 1, then (grid + 1) * size / 2 - 0.5):
  // the same value as loc * size - 0.5, rounded the same way as the reference, so float32 results agree to
  // ~1e-7 instead of differing by the ~1e-5 rounding noise of a coordinate near 64.
  const acc_t grid_x = loc_x * acc_t(2) - acc_t(1);
  const acc_t grid_y = loc_y * acc_t(2) - acc_t(1);
  const acc_t x = (grid_x + acc_t(1)) * (static_cast<acc_t>(width) * acc_t(0.5)) - acc_t(0.5);
  const acc_t y = (grid_y + acc_t(1)) * (static_cast<acc_t>(height) * acc_t(0.5)) - acc_t(0.5);
  f.width = static_cast<acc_t>(width);
  f.height = static_cast<acc_t>(height);
  f.any_inside = false;
  f.all_inside = false;
  // Far outside (or NaN): no corner can be inside; also keeps the integer conversion below in range. At
  // exactly -1 the right/bottom corners are inside with weight 0 but a non-zero gradient, as in grid_sample.
  if (!(x >= acc_t(-1) && y >= acc_t(-1) && x < f.width && y < f.height)) {
    for (int c = 0; c < 4; ++c) {
      f.position[c] = 0;
      f.weight[c] = acc_t(0);
      f.inside[c] = false;
    }
    f.frac_x = acc_t(0);
    f.frac_y = acc_t(0);
    return f;
  }
  const acc_t x0f = floor_value(x);
  const acc_t y0f = floor_value(y);
  const int64_t x0 = static_cast<int64_t>(x0f);
  const int64_t y0 = static_cast<int64_t>(y0f);
  f.frac_x = x - x0f;
  f.frac_y = y - y0f;
  const acc_t rest_x = acc_t(1) - f.frac_x;
  const acc_t rest_y = acc_t(1) - f.frac_y;
  const int64_t rows[4] = {y0, y0, y0 + 1, y0 + 1};
  const int64_t cols[4] = {x0, x0 + 1, x0, x0 + 1};
  const acc_t weights[4] = {rest_y * rest_x, rest_y * f.frac_x, f.frac_y * rest_x, f.frac_y * f.frac_x};
  f.all_inside = true;
  for (int c = 0; c < 4; ++c) {
    f.inside[c] = rows[c] >= 0 && rows[c] < height && cols[c] >= 0 && cols[c] < width;
    f.position[c] = f.inside[c] ? rows[c] * width + cols[c] : 0;
    f.weight[c] = weights[c];
    f.any_inside = f.any_inside || f.inside[c];
    f.all_inside = f.all_inside && f.inside[c];
  }
  return f;
}

// The functions below take kAllInside = f.all_inside as a compile-time flag: with it the corner tests
// vanish and a loop over channels has no branches (the CPU kernel vectorises it). Callers branch once per
// sample: `f.all_inside ? fn<true>(...) : fn<false>(...)`.

// One channel of a bilinear sample: sum over the corners on the map of weight * value.
template <bool kAllInside, typename scalar_t, typename acc_t>
M2FR_HOST_DEVICE acc_t bilinear_sample(const scalar_t* base, int64_t position_stride,
                                       const BilinearFootprint<acc_t>& f) {
  acc_t sample = acc_t(0);
  for (int c = 0; c < 4; ++c) {
    if (kAllInside || f.inside[c]) {
      sample += f.weight[c] * static_cast<acc_t>(base[f.position[c] * position_stride]);
    }
  }
  return sample;
}

// Gradient of one channel of a bilinear sample.
//
//   grad_sample        dL/d(sample) of this channel (already multiplied by the attention weight).
//   grad_base          gradient buffer laid out like `base` (accumulation type); receives
//                      grad_sample * weight at each corner on the map through add(pointer, amount).
//   grad_x, grad_y     accumulate dL/d(loc_x), dL/d(loc_y) (normalised coordinates).
// Returns the sample's value (the caller needs it for the attention weight's gradient).
template <bool kAllInside, typename scalar_t, typename acc_t, typename AddFn>
M2FR_HOST_DEVICE acc_t bilinear_sample_backward(const scalar_t* base, acc_t* grad_base, int64_t position_stride,
                                                const BilinearFootprint<acc_t>& f, acc_t grad_sample,
                                                acc_t& grad_x, acc_t& grad_y, AddFn add) {
  acc_t corner[4];
  acc_t sample = acc_t(0);
  for (int c = 0; c < 4; ++c) {
    corner[c] = acc_t(0);
    if (kAllInside || f.inside[c]) {
      const int64_t at = f.position[c] * position_stride;
      corner[c] = static_cast<acc_t>(base[at]);
      sample += f.weight[c] * corner[c];
      add(grad_base + at, grad_sample * f.weight[c]);
    }
  }
  const acc_t rest_x = acc_t(1) - f.frac_x;
  const acc_t rest_y = acc_t(1) - f.frac_y;
  // d(sample)/d(pixel x) and d(sample)/d(pixel y); pixel x = loc_x * W - 0.5.
  const acc_t d_x = rest_y * (corner[1] - corner[0]) + f.frac_y * (corner[3] - corner[2]);
  const acc_t d_y = rest_x * (corner[2] - corner[0]) + f.frac_x * (corner[3] - corner[1]);
  grad_x += grad_sample * d_x * f.width;
  grad_y += grad_sample * d_y * f.height;
  return sample;
}

}  // namespace msda
}  // namespace mask2former_rankseg
