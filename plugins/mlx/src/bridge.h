// The C++ half of the bridge to libmlx: one opaque array type and free functions that
// each forward to one MLX call. No model logic lives here (that is Rust's, in
// forward.rs); this file only adapts types cxx cannot carry (std::optional, Shape,
// std::vector<array>) and turns MLX's exceptions into cxx errors.
#pragma once

#include <memory>
#include <mlx/array.h>

#include "rust/cxx.h"

namespace hearth_mlx {

using Array = mlx::core::array;

struct NamedArray;
struct GpuDeviceInfo;

// Loading: every tensor of a file, evaluated (so no lazy load is left bound to the
// loading thread's stream).
rust::Vec<NamedArray> load_gguf(rust::Str path);
rust::Vec<NamedArray> load_safetensors(rust::Str path);

// Inspecting and moving data.
rust::Vec<int32_t> shape(const Array& a);
rust::String dtype_name(const Array& a);
size_t nbytes(const Array& a);
std::unique_ptr<Array> from_i32(rust::Slice<const int32_t> data, rust::Slice<const int32_t> shape);
std::unique_ptr<Array> from_u32(rust::Slice<const uint32_t> data, rust::Slice<const int32_t> shape);
std::unique_ptr<Array> from_f32(rust::Slice<const float> data, rust::Slice<const int32_t> shape);
rust::Vec<float> to_f32_vec(const Array& a);
void eval(const Array& a);

// Element-wise and shape operations.
std::unique_ptr<Array> as_f32(const Array& a);
std::unique_ptr<Array> add(const Array& a, const Array& b);
std::unique_ptr<Array> multiply(const Array& a, const Array& b);
std::unique_ptr<Array> scale(const Array& a, float factor);
std::unique_ptr<Array> sigmoid(const Array& a);
std::unique_ptr<Array> tanh_of(const Array& a);
std::unique_ptr<Array> subtract(const Array& a, const Array& b);
std::unique_ptr<Array> divide(const Array& a, const Array& b);
std::unique_ptr<Array> maximum(const Array& a, const Array& b);
std::unique_ptr<Array> sqrt_of(const Array& a);
// The sum over the last axis, kept as an axis of 1.
std::unique_ptr<Array> sum_last(const Array& a);
std::unique_ptr<Array> reshape(const Array& a, rust::Slice<const int32_t> shape);
std::unique_ptr<Array> transpose(const Array& a, rust::Slice<const int32_t> axes);
std::unique_ptr<Array> concatenate(const Array& a, const Array& b, int32_t axis);
std::unique_ptr<Array> slice(const Array& a, rust::Slice<const int32_t> start, rust::Slice<const int32_t> stop);
std::unique_ptr<Array> take(const Array& a, const Array& indices, int32_t axis);

// Linear algebra, plain and quantized (MLX's affine quantization: w = scale * q + bias).
std::unique_ptr<Array> matmul(const Array& a, const Array& b);
std::unique_ptr<Array> quantized_matmul(
    const Array& x, const Array& w, const Array& scales, const Array& biases, int32_t group_size, int32_t bits);
std::unique_ptr<Array> dequantize(
    const Array& w, const Array& scales, const Array& biases, int32_t group_size, int32_t bits);

// mlx::fast kernels.
std::unique_ptr<Array> rms_norm(const Array& x, const Array& weight, float eps);
std::unique_ptr<Array> rope(const Array& x, int32_t dims, bool traditional, float base, int32_t offset);
std::unique_ptr<Array> attention(const Array& q, const Array& k, const Array& v, float scale, bool causal);
std::unique_ptr<Array> attention_masked(const Array& q, const Array& k, const Array& v, float scale, const Array& mask);

// Devices and memory.
bool gpu_available();
// MLX's description of its GPU (mlx::core::device_info), the keys the probe reads.
GpuDeviceInfo gpu_device_info();
// The file libmlx was loaded from, as the dynamic loader opened it (dladdr on one of
// its functions): the RUNPATH, LD_LIBRARY_PATH or a preload may each have chosen it.
rust::String library_path();
size_t cache_memory();
void clear_cache();

}  // namespace hearth_mlx
