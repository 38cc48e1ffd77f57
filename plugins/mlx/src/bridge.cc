// Each function forwards to one MLX call; see bridge.h for why this file exists.
#include "hearth-mlx/src/bridge.h"

#include <dlfcn.h>

#include <stdexcept>
#include <string>
#include <variant>

#include <mlx/device.h>
#include <mlx/fast.h>
#include <mlx/io.h>
#include <mlx/memory.h>
#include <mlx/ops.h>
#include <mlx/transforms.h>

#include "hearth-mlx/src/ffi.rs.h"

namespace mx = mlx::core;

namespace hearth_mlx {

namespace {

std::unique_ptr<Array> boxed(mx::array a) {
  return std::make_unique<Array>(std::move(a));
}

mx::Shape to_shape(rust::Slice<const int32_t> dims) {
  return mx::Shape(dims.begin(), dims.end());
}

template <typename Map>
rust::Vec<NamedArray> named(Map& arrays) {
  std::vector<mx::array> all;
  for (auto& [name, array] : arrays) {
    all.push_back(array);
  }
  mx::eval(all);
  rust::Vec<NamedArray> out;
  for (auto& [name, array] : arrays) {
    out.push_back(NamedArray{rust::String(name), boxed(array)});
  }
  return out;
}

}  // namespace

rust::Vec<NamedArray> load_gguf(rust::Str path) {
  auto loaded = mx::load_gguf(std::string(path));
  return named(loaded.first);
}

rust::Vec<NamedArray> load_safetensors(rust::Str path) {
  auto loaded = mx::load_safetensors(std::string(path));
  return named(loaded.first);
}

rust::Vec<int32_t> shape(const Array& a) {
  rust::Vec<int32_t> out;
  for (auto dim : a.shape()) {
    out.push_back(dim);
  }
  return out;
}

rust::String dtype_name(const Array& a) {
  std::ostringstream name;
  name << a.dtype();
  return rust::String(name.str());
}

size_t nbytes(const Array& a) {
  return a.nbytes();
}

std::unique_ptr<Array> from_i32(rust::Slice<const int32_t> data, rust::Slice<const int32_t> shape) {
  return boxed(mx::array(data.data(), to_shape(shape), mx::int32));
}

std::unique_ptr<Array> from_u32(rust::Slice<const uint32_t> data, rust::Slice<const int32_t> shape) {
  return boxed(mx::array(data.data(), to_shape(shape), mx::uint32));
}

std::unique_ptr<Array> from_f32(rust::Slice<const float> data, rust::Slice<const int32_t> shape) {
  return boxed(mx::array(data.data(), to_shape(shape), mx::float32));
}

rust::Vec<float> to_f32_vec(const Array& a) {
  auto values = mx::astype(mx::reshape(a, {-1}), mx::float32);
  mx::eval(values);
  rust::Vec<float> out;
  out.reserve(values.size());
  const float* data = values.data<float>();
  for (size_t i = 0; i < values.size(); ++i) {
    out.push_back(data[i]);
  }
  return out;
}

void eval(const Array& a) {
  mx::eval(a);
}


std::unique_ptr<Array> as_f32(const Array& a) {
  return boxed(mx::astype(a, mx::float32));
}


std::unique_ptr<Array> add(const Array& a, const Array& b) {
  return boxed(mx::add(a, b));
}

std::unique_ptr<Array> multiply(const Array& a, const Array& b) {
  return boxed(mx::multiply(a, b));
}

std::unique_ptr<Array> scale(const Array& a, float factor) {
  return boxed(mx::multiply(a, mx::array(factor, a.dtype())));
}

std::unique_ptr<Array> sigmoid(const Array& a) {
  return boxed(mx::sigmoid(a));
}

std::unique_ptr<Array> tanh_of(const Array& a) {
  return boxed(mx::tanh(a));
}

std::unique_ptr<Array> subtract(const Array& a, const Array& b) {
  return boxed(mx::subtract(a, b));
}

std::unique_ptr<Array> divide(const Array& a, const Array& b) {
  return boxed(mx::divide(a, b));
}

std::unique_ptr<Array> maximum(const Array& a, const Array& b) {
  return boxed(mx::maximum(a, b));
}

std::unique_ptr<Array> sqrt_of(const Array& a) {
  return boxed(mx::sqrt(a));
}

std::unique_ptr<Array> sum_last(const Array& a) {
  return boxed(mx::sum(a, -1, true));
}


std::unique_ptr<Array> reshape(const Array& a, rust::Slice<const int32_t> shape) {
  return boxed(mx::reshape(a, to_shape(shape)));
}

std::unique_ptr<Array> transpose(const Array& a, rust::Slice<const int32_t> axes) {
  return boxed(mx::transpose(a, std::vector<int>(axes.begin(), axes.end())));
}

std::unique_ptr<Array> concatenate(const Array& a, const Array& b, int32_t axis) {
  return boxed(mx::concatenate({a, b}, axis));
}

std::unique_ptr<Array> slice(const Array& a, rust::Slice<const int32_t> start, rust::Slice<const int32_t> stop) {
  return boxed(mx::slice(a, to_shape(start), to_shape(stop)));
}

std::unique_ptr<Array> take(const Array& a, const Array& indices, int32_t axis) {
  return boxed(mx::take(a, indices, axis));
}

std::unique_ptr<Array> matmul(const Array& a, const Array& b) {
  return boxed(mx::matmul(a, b));
}

std::unique_ptr<Array> quantized_matmul(
    const Array& x, const Array& w, const Array& scales, const Array& biases, int32_t group_size, int32_t bits) {
  return boxed(mx::quantized_matmul(x, w, scales, biases, true, group_size, bits));
}

std::unique_ptr<Array> dequantize(
    const Array& w, const Array& scales, const Array& biases, int32_t group_size, int32_t bits) {
  return boxed(mx::dequantize(w, scales, biases, group_size, bits));
}

std::unique_ptr<Array> rms_norm(const Array& x, const Array& weight, float eps) {
  return boxed(mx::fast::rms_norm(x, weight, eps));
}

std::unique_ptr<Array> rope(const Array& x, int32_t dims, bool traditional, float base, int32_t offset) {
  return boxed(mx::fast::rope(x, dims, traditional, base, 1.0f, offset));
}

std::unique_ptr<Array> attention(const Array& q, const Array& k, const Array& v, float scale, bool causal) {
  return boxed(mx::fast::scaled_dot_product_attention(q, k, v, scale, causal ? "causal" : ""));
}

std::unique_ptr<Array> attention_masked(const Array& q, const Array& k, const Array& v, float scale, const Array& mask) {
  return boxed(mx::fast::scaled_dot_product_attention(q, k, v, scale, "array", mask));
}

bool gpu_available() {
  return mx::is_available(mx::Device::gpu);
}

GpuDeviceInfo gpu_device_info() {
  const auto& info = mx::device_info(mx::Device(mx::Device::gpu));
  // Each backend fills its own keys (mlx/device.h); a missing one reads as 0 or "".
  auto size = [&](const char* key) -> size_t {
    auto found = info.find(key);
    if (found == info.end()) {
      return 0;
    }
    auto value = std::get_if<size_t>(&found->second);
    return value ? *value : 0;
  };
  auto text = [&](const char* key) -> rust::String {
    auto found = info.find(key);
    if (found == info.end()) {
      return rust::String();
    }
    auto value = std::get_if<std::string>(&found->second);
    return value ? rust::String(*value) : rust::String();
  };
  // CUDA names the total `total_memory`, Metal `memory_size`.
  size_t total = size("total_memory");
  return GpuDeviceInfo{
      text("device_name"),
      total ? total : size("memory_size"),
      size("free_memory"),
      size("max_recommended_working_set_size"),
  };
}

rust::String library_path() {
  // A function only libmlx defines: its address lies in libmlx's mapping. The plugin is
  // position-independent, so the address comes from the GOT the loader filled: the
  // definition itself, never a stub of ours.
  auto symbol = reinterpret_cast<void*>(static_cast<const mx::Device& (*)()>(&mx::default_device));
  Dl_info info;
  if (dladdr(symbol, &info) == 0 || info.dli_fname == nullptr) {
    throw std::runtime_error("dladdr names no library holding mlx::core::default_device");
  }
  return rust::String(info.dli_fname);
}


size_t cache_memory() {
  return mx::get_cache_memory();
}

void clear_cache() {
  mx::clear_cache();
}

}  // namespace hearth_mlx
