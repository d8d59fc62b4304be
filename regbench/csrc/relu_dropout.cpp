// ReLU followed by dropout, forward and backward, for a fused group's hidden
// layers on the CPU: one pass over the pre-activation where PyTorch's ops take
// five (ReLU, the mask's compare and scale, the multiply; in backward the mask
// multiply and ReLU's threshold). Built by regbench/kernels.py, used by
// regbench/batched.py. Every value is what those PyTorch ops give, bit for bit:
//   forward   out = relu(z) * m
//   backward  gz  = z <= 0 ? 0 : g * m     (threshold_backward(g * m, relu(z), 0))
// with m = lane < thr ? scale : 0, the mask MaskSampler makes (lt, then times
// 1/keep). Only multiplies and selects, so no contraction or reordering can
// change a bit (built with -ffp-contract=off all the same); relu keeps NaN and
// -0 as torch's does, and backward tests relu(z) <= 0 as threshold_backward.
//
// Shapes: z (R, B, U) float32 with unit stride along U (a Linear's output, or
// BatchNorm's (B, R, C) output seen as (R, B, C)); lanes (R, B, H) int16, of
// which this position reads the U columns from lo; thr (R, H) int16 and scale
// (R, H) float32, per replica and column. Outputs are new (R, B, U) tensors.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#if defined(__x86_64__) && defined(__GNUC__)
// AVX-512 (with BW: int16 compares) and AVX2 versions, picked when loaded; the
// baseline (SSE2) one is slower than PyTorch's ops, so vector_level() tells
// regbench whether to use this at all.
#define RB_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define RB_CLONES
#endif

RB_CLONES static void forward_row(const float* z, const int16_t* lane, const int16_t* thr, const float* scale,
                                  float* out, int64_t n) {
  for (int64_t u = 0; u < n; ++u) {
    const float x = z[u];
    const float r = x < 0.f ? 0.f : x;  // as torch.relu: NaN stays NaN, -0 stays -0
    out[u] = r * (lane[u] < thr[u] ? scale[u] : 0.f);
  }
}

RB_CLONES static void backward_row(const float* g, const float* z, const int16_t* lane, const int16_t* thr,
                                   const float* scale, float* out, int64_t n) {
  for (int64_t u = 0; u < n; ++u) {
    const float gm = g[u] * (lane[u] < thr[u] ? scale[u] : 0.f);
    out[u] = z[u] <= 0.f ? 0.f : gm;  // threshold_backward's test, of relu(z): a NaN z passes the gradient
  }
}

// Rows of U units each thread takes at least: as PyTorch's elementwise kernels, no
// second thread below 32768 elements. Each unit is computed alone, so the
// values do not depend on the threads.
static int64_t grain(int64_t U) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, U)); }

static void check(const torch::Tensor& z, const torch::Tensor& lanes, int64_t lo, const torch::Tensor& thr,
                  const torch::Tensor& scale) {
  TORCH_CHECK(z.device().is_cpu() && z.scalar_type() == torch::kFloat && z.dim() == 3 && z.stride(2) == 1,
              "z: a CPU float32 (R, B, U) tensor with unit stride along U");
  TORCH_CHECK(lanes.scalar_type() == torch::kShort && lanes.dim() == 3 && lanes.is_contiguous() &&
                  lanes.size(0) == z.size(0) && lanes.size(1) == z.size(1) && lo >= 0 &&
                  lo + z.size(2) <= lanes.size(2),
              "lanes: a contiguous int16 (R, B, H) tensor holding this position's columns");
  TORCH_CHECK(thr.scalar_type() == torch::kShort && thr.is_contiguous() && thr.dim() == 2 &&
                  thr.size(0) == z.size(0) && thr.size(1) == lanes.size(2),
              "thr: a contiguous int16 (R, H) tensor");
  TORCH_CHECK(scale.scalar_type() == torch::kFloat && scale.is_contiguous() && scale.sizes() == thr.sizes(),
              "scale: a contiguous float32 (R, H) tensor");
}

torch::Tensor relu_dropout_forward(torch::Tensor z, torch::Tensor lanes, int64_t lo, torch::Tensor thr,
                                   torch::Tensor scale) {
  check(z, lanes, lo, thr, scale);
  const int64_t R = z.size(0), B = z.size(1), U = z.size(2), H = lanes.size(2);
  const int64_t sR = z.stride(0), sB = z.stride(1);
  auto out = torch::empty({R, B, U}, z.options());
  const float* zp = z.data_ptr<float>();
  const int16_t* lp = lanes.data_ptr<int16_t>();
  const int16_t* tp = thr.data_ptr<int16_t>();
  const float* sp = scale.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, R * B, grain(U), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t r = i / B, b = i % B;
      forward_row(zp + r * sR + b * sB, lp + i * H + lo, tp + r * H + lo, sp + r * H + lo, op + i * U, U);
    }
  });
  return out;
}

torch::Tensor relu_dropout_backward(torch::Tensor g, torch::Tensor z, torch::Tensor lanes, int64_t lo,
                                    torch::Tensor thr, torch::Tensor scale) {
  check(z, lanes, lo, thr, scale);
  TORCH_CHECK(g.sizes() == z.sizes() && g.scalar_type() == torch::kFloat, "g: z's shape, float32");
  g = g.contiguous();
  const int64_t R = z.size(0), B = z.size(1), U = z.size(2), H = lanes.size(2);
  const int64_t sR = z.stride(0), sB = z.stride(1);
  auto gz = torch::empty({R, B, U}, z.options());
  const float* gp = g.data_ptr<float>();
  const float* zp = z.data_ptr<float>();
  const int16_t* lp = lanes.data_ptr<int16_t>();
  const int16_t* tp = thr.data_ptr<int16_t>();
  const float* sp = scale.data_ptr<float>();
  float* op = gz.data_ptr<float>();
  at::parallel_for(0, R * B, grain(U), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t r = i / B, b = i % B;
      backward_row(gp + i * U, zp + r * sR + b * sB, lp + i * H + lo, tp + r * H + lo, sp + r * H + lo, op + i * U, U);
    }
  });
  return gz;
}

// The widest vector instructions the loops above run with on this CPU: 512
// (x86-64-v4), 256 (x86-64-v3) or 0 (the baseline, which regbench leaves unused).
int64_t vector_level() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return 512;
  if (__builtin_cpu_supports("x86-64-v3")) return 256;
#endif
  return 0;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("relu_dropout_forward", &relu_dropout_forward);
  m.def("relu_dropout_backward", &relu_dropout_backward);
  m.def("vector_level", &vector_level);
}
