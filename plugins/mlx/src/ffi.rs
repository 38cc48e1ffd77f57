//! The Rust half of the bridge to libmlx (see `bridge.h` for the C++ half), and
//! [`Array`], a safe owner of one MLX array with the operations the forward pass uses.
//!
//! Every operation is lazy, as in MLX itself: it records a node of the compute graph
//! and returns at once; [`Array::eval`] or [`Array::to_f32_vec`] runs the graph. MLX
//! reports bad shapes and failed evaluations with C++ exceptions, which cxx turns into
//! [`cxx::Exception`] and this module into [`PluginError`]s.

use cxx::UniquePtr;
use hearth_sdk::PluginError;

pub use bridge::GpuDeviceInfo;

#[cxx::bridge(namespace = "hearth_mlx")]
mod bridge {
    /// One tensor of a loaded file.
    struct NamedArray {
        name: String,
        array: UniquePtr<Array>,
    }

    /// What MLX says of its GPU (`mlx::core::device_info`); 0 or "" where the backend
    /// gives no such key (CUDA gives `free_memory`, Metal the recommended working set).
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct GpuDeviceInfo {
        name: String,
        total_memory: usize,
        free_memory: usize,
        recommended_working_set: usize,
    }

    unsafe extern "C++" {
        include!("hearth-mlx/src/bridge.h");

        type Array;

        fn load_gguf(path: &str) -> Result<Vec<NamedArray>>;
        fn load_safetensors(path: &str) -> Result<Vec<NamedArray>>;

        fn shape(a: &Array) -> Vec<i32>;
        fn dtype_name(a: &Array) -> String;
        fn nbytes(a: &Array) -> usize;
        fn from_i32(data: &[i32], shape: &[i32]) -> Result<UniquePtr<Array>>;
        fn from_u32(data: &[u32], shape: &[i32]) -> Result<UniquePtr<Array>>;
        fn from_f32(data: &[f32], shape: &[i32]) -> Result<UniquePtr<Array>>;
        fn to_f32_vec(a: &Array) -> Result<Vec<f32>>;
        fn eval(a: &Array) -> Result<()>;

        fn as_f32(a: &Array) -> Result<UniquePtr<Array>>;
        fn add(a: &Array, b: &Array) -> Result<UniquePtr<Array>>;
        fn multiply(a: &Array, b: &Array) -> Result<UniquePtr<Array>>;
        fn scale(a: &Array, factor: f32) -> Result<UniquePtr<Array>>;
        fn sigmoid(a: &Array) -> Result<UniquePtr<Array>>;
        fn tanh_of(a: &Array) -> Result<UniquePtr<Array>>;
        fn subtract(a: &Array, b: &Array) -> Result<UniquePtr<Array>>;
        fn divide(a: &Array, b: &Array) -> Result<UniquePtr<Array>>;
        fn maximum(a: &Array, b: &Array) -> Result<UniquePtr<Array>>;
        fn sqrt_of(a: &Array) -> Result<UniquePtr<Array>>;
        fn sum_last(a: &Array) -> Result<UniquePtr<Array>>;
        fn reshape(a: &Array, shape: &[i32]) -> Result<UniquePtr<Array>>;
        fn transpose(a: &Array, axes: &[i32]) -> Result<UniquePtr<Array>>;
        fn concatenate(a: &Array, b: &Array, axis: i32) -> Result<UniquePtr<Array>>;
        fn slice(a: &Array, start: &[i32], stop: &[i32]) -> Result<UniquePtr<Array>>;
        fn take(a: &Array, indices: &Array, axis: i32) -> Result<UniquePtr<Array>>;

        fn matmul(a: &Array, b: &Array) -> Result<UniquePtr<Array>>;
        fn quantized_matmul(
            x: &Array,
            w: &Array,
            scales: &Array,
            biases: &Array,
            group_size: i32,
            bits: i32,
        ) -> Result<UniquePtr<Array>>;
        fn dequantize(
            w: &Array,
            scales: &Array,
            biases: &Array,
            group_size: i32,
            bits: i32,
        ) -> Result<UniquePtr<Array>>;

        fn rms_norm(x: &Array, weight: &Array, eps: f32) -> Result<UniquePtr<Array>>;
        fn rope(
            x: &Array,
            dims: i32,
            traditional: bool,
            base: f32,
            offset: i32,
        ) -> Result<UniquePtr<Array>>;
        fn attention(
            q: &Array,
            k: &Array,
            v: &Array,
            scale: f32,
            causal: bool,
        ) -> Result<UniquePtr<Array>>;

        fn attention_masked(
            q: &Array,
            k: &Array,
            v: &Array,
            scale: f32,
            mask: &Array,
        ) -> Result<UniquePtr<Array>>;

        fn gpu_available() -> bool;
        fn gpu_device_info() -> Result<GpuDeviceInfo>;
        fn library_path() -> Result<String>;
        fn cache_memory() -> usize;
        fn clear_cache();
    }
}

// SAFETY: an mlx::core::array is a reference-counted handle (std::shared_ptr with atomic
// counts) to immutable data once evaluated. Weights are evaluated at load; arrays built
// during a generation stay on the thread that builds them, behind the model's lock.
unsafe impl Send for bridge::Array {}
unsafe impl Sync for bridge::Array {}

fn mlx_error(what: &str, error: cxx::Exception) -> PluginError {
    PluginError::internal(format!("MLX {what}: {}", error.what()))
}

fn wrap(
    what: &str,
    result: Result<UniquePtr<bridge::Array>, cxx::Exception>,
) -> Result<Array, PluginError> {
    result.map(Array).map_err(|error| mlx_error(what, error))
}

/// MLX copies as many elements as `shape` holds: refuse a shorter (or longer) slice.
fn check_len(len: usize, shape: &[i32]) -> Result<(), PluginError> {
    let elements: i64 = shape.iter().map(|&dim| i64::from(dim)).product();
    if elements != len as i64 {
        return Err(PluginError::internal(format!("{len} values for an array of shape {shape:?}")));
    }
    Ok(())
}

/// One MLX array (owned handle; MLX shares the underlying buffer between handles).
pub struct Array(UniquePtr<bridge::Array>);

impl std::fmt::Debug for Array {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Array({} {:?})", self.dtype(), self.shape())
    }
}

/// Every tensor of a GGUF file, as MLX decodes it: quantized `X.weight` tensors come
/// with `X.scales` and `X.biases`.
pub fn load_gguf(path: &str) -> Result<Vec<(String, Array)>, PluginError> {
    named(bridge::load_gguf(path).map_err(|error| {
        PluginError::model_file(format!("MLX cannot load {path}: {}", error.what()))
    })?)
}

/// Every tensor of a safetensors file.
pub fn load_safetensors(path: &str) -> Result<Vec<(String, Array)>, PluginError> {
    named(bridge::load_safetensors(path).map_err(|error| {
        PluginError::model_file(format!("MLX cannot load {path}: {}", error.what()))
    })?)
}

fn named(arrays: Vec<bridge::NamedArray>) -> Result<Vec<(String, Array)>, PluginError> {
    Ok(arrays.into_iter().map(|named| (named.name, Array(named.array))).collect())
}

/// Whether this libmlx build has a GPU backend (Metal or CUDA) with a usable device.
pub fn gpu_available() -> bool {
    bridge::gpu_available()
}

/// MLX's description of its GPU; only meaningful where [`gpu_available`].
pub fn gpu_device_info() -> Result<GpuDeviceInfo, PluginError> {
    bridge::gpu_device_info().map_err(|error| mlx_error("device_info", error))
}

/// The libmlx this process runs, resolved to its real file: the one the dynamic loader
/// picked, which is not necessarily the folder the plugin was built against.
pub fn library_path() -> Result<std::path::PathBuf, PluginError> {
    let loaded = bridge::library_path().map_err(|error| mlx_error("library path", error))?;
    std::fs::canonicalize(&loaded).map_err(|error| {
        PluginError::internal(format!(
            "libmlx was loaded from {loaded}, which does not resolve: {error}"
        ))
    })
}

/// Bytes MLX keeps in its buffer cache for reuse, process-wide.
pub fn cache_memory() -> u64 {
    bridge::cache_memory() as u64
}

/// Return MLX's cached buffers to the system.
pub fn clear_cache() {
    bridge::clear_cache();
}

impl Array {
    pub fn from_i32(data: &[i32], shape: &[i32]) -> Result<Self, PluginError> {
        wrap("array", bridge::from_i32(data, shape))
    }
    /// A uint32 array of `shape` holding a copy of `data` (quantized weights' words).
    pub fn from_u32(data: &[u32], shape: &[i32]) -> Result<Self, PluginError> {
        check_len(data.len(), shape)?;
        wrap("array", bridge::from_u32(data, shape))
    }
    /// A float32 array of `shape` holding a copy of `data`.
    pub fn from_f32(data: &[f32], shape: &[i32]) -> Result<Self, PluginError> {
        check_len(data.len(), shape)?;
        wrap("array", bridge::from_f32(data, shape))
    }
    pub fn shape(&self) -> Vec<i32> {
        bridge::shape(&self.0)
    }
    pub fn dtype(&self) -> String {
        bridge::dtype_name(&self.0)
    }
    pub fn nbytes(&self) -> u64 {
        bridge::nbytes(&self.0) as u64
    }
    /// Evaluate the graph behind this array.
    pub fn eval(&self) -> Result<(), PluginError> {
        bridge::eval(&self.0).map_err(|error| mlx_error("eval", error))
    }
    /// Evaluate, and copy out as flat `f32`s.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>, PluginError> {
        bridge::to_f32_vec(&self.0).map_err(|error| mlx_error("eval", error))
    }
    pub fn as_f32(&self) -> Result<Self, PluginError> {
        wrap("astype", bridge::as_f32(&self.0))
    }
    pub fn add(&self, other: &Array) -> Result<Self, PluginError> {
        wrap("add", bridge::add(&self.0, &other.0))
    }
    pub fn multiply(&self, other: &Array) -> Result<Self, PluginError> {
        wrap("multiply", bridge::multiply(&self.0, &other.0))
    }
    pub fn scale(&self, factor: f32) -> Result<Self, PluginError> {
        wrap("scale", bridge::scale(&self.0, factor))
    }
    pub fn subtract(&self, other: &Array) -> Result<Self, PluginError> {
        wrap("subtract", bridge::subtract(&self.0, &other.0))
    }
    pub fn divide(&self, other: &Array) -> Result<Self, PluginError> {
        wrap("divide", bridge::divide(&self.0, &other.0))
    }
    pub fn maximum(&self, other: &Array) -> Result<Self, PluginError> {
        wrap("maximum", bridge::maximum(&self.0, &other.0))
    }
    pub fn sqrt(&self) -> Result<Self, PluginError> {
        wrap("sqrt", bridge::sqrt_of(&self.0))
    }
    pub fn tanh(&self) -> Result<Self, PluginError> {
        wrap("tanh", bridge::tanh_of(&self.0))
    }
    /// The sum over the last axis, kept as an axis of 1.
    pub fn sum_last(&self) -> Result<Self, PluginError> {
        wrap("sum", bridge::sum_last(&self.0))
    }
    /// GELU with the tanh approximation: `x/2 · (1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
    pub fn gelu_tanh(&self) -> Result<Self, PluginError> {
        const SQRT_2_OVER_PI: f32 = 0.797_884_6;
        let cubed = self.multiply(self)?.multiply(self)?;
        let inner = self.add(&cubed.scale(0.044_715)?)?.scale(SQRT_2_OVER_PI)?;
        let tanh = inner.tanh()?;
        let one_plus = tanh.add(&Array::from_f32(&[1.0], &[1])?)?;
        self.multiply(&one_plus)?.scale(0.5)
    }
    /// `x * sigmoid(x)`.
    pub fn silu(&self) -> Result<Self, PluginError> {
        self.multiply(&wrap("sigmoid", bridge::sigmoid(&self.0))?)
    }
    pub fn reshape(&self, shape: &[i32]) -> Result<Self, PluginError> {
        wrap("reshape", bridge::reshape(&self.0, shape))
    }
    pub fn transpose(&self, axes: &[i32]) -> Result<Self, PluginError> {
        wrap("transpose", bridge::transpose(&self.0, axes))
    }
    pub fn concatenate(&self, other: &Array, axis: i32) -> Result<Self, PluginError> {
        wrap("concatenate", bridge::concatenate(&self.0, &other.0, axis))
    }
    pub fn slice(&self, start: &[i32], stop: &[i32]) -> Result<Self, PluginError> {
        wrap("slice", bridge::slice(&self.0, start, stop))
    }
    /// Rows (along `axis`) at `indices`.
    pub fn take(&self, indices: &Array, axis: i32) -> Result<Self, PluginError> {
        wrap("take", bridge::take(&self.0, &indices.0, axis))
    }
    pub fn matmul(&self, other: &Array) -> Result<Self, PluginError> {
        wrap("matmul", bridge::matmul(&self.0, &other.0))
    }
    /// `self @ dequantize(w)ᵀ` without materialising the dequantized matrix.
    pub fn quantized_matmul(
        &self,
        w: &Array,
        scales: &Array,
        biases: &Array,
        group_size: i32,
        bits: i32,
    ) -> Result<Self, PluginError> {
        wrap(
            "quantized_matmul",
            bridge::quantized_matmul(&self.0, &w.0, &scales.0, &biases.0, group_size, bits),
        )
    }
    pub fn dequantize(
        &self,
        scales: &Array,
        biases: &Array,
        group_size: i32,
        bits: i32,
    ) -> Result<Self, PluginError> {
        wrap("dequantize", bridge::dequantize(&self.0, &scales.0, &biases.0, group_size, bits))
    }
    /// `mlx::fast::rms_norm` over the last axis.
    pub fn rms_norm(&self, weight: &Array, eps: f32) -> Result<Self, PluginError> {
        wrap("rms_norm", bridge::rms_norm(&self.0, &weight.0, eps))
    }
    /// `mlx::fast::rope` on `[batch, heads, tokens, head_dim]`, tokens starting at `offset`.
    pub fn rope(
        &self,
        dims: i32,
        traditional: bool,
        base: f32,
        offset: i32,
    ) -> Result<Self, PluginError> {
        wrap("rope", bridge::rope(&self.0, dims, traditional, base, offset))
    }
    /// `mlx::fast::scaled_dot_product_attention`; grouped-query heads are broadcast by MLX.
    pub fn attention(
        &self,
        k: &Array,
        v: &Array,
        scale: f32,
        causal: bool,
    ) -> Result<Self, PluginError> {
        wrap("attention", bridge::attention(&self.0, &k.0, &v.0, scale, causal))
    }
    /// Attention with an additive `mask` (`[queries, keys]`, 0 or −∞).
    pub fn attention_masked(
        &self,
        k: &Array,
        v: &Array,
        scale: f32,
        mask: &Array,
    ) -> Result<Self, PluginError> {
        wrap("attention", bridge::attention_masked(&self.0, &k.0, &v.0, scale, &mask.0))
    }
}
