//! LoRA adapters on MLX, applied per request on the low-rank path
//! `y = W x + s · factor · B (A x)`. The file is read and checked by the model layer
//! ([`LoraFile`]: format, architecture, shapes, rank, alpha, and the row order of Q and
//! K for Hugging Face-layout models); this module makes MLX arrays of its pairs.

use std::sync::Arc;

use hearth_model::{Config, LayerTensors, LoraFile, Role};
use hearth_sdk::PluginError;

use crate::ffi::Array;

/// One adapter's `(A [rank, in], B [out, rank])` pairs per layer and role.
pub struct Adapter {
    layers: Vec<LayerTensors<(Array, Array)>>,
    factor: f32,
}

impl Adapter {
    /// Load and check an adapter for a model of shape `config`; `name` is the catalog's
    /// name for it, used in errors.
    pub fn load(name: &str, path: &str, config: &Config) -> Result<Self, PluginError> {
        let file = LoraFile::read(name, path, config)?;
        let mut layers: Vec<LayerTensors<(Array, Array)>> =
            (0..config.n_layer).map(|_| LayerTensors::default()).collect();
        for pair in file.pairs {
            let (inputs, outputs) = config.projection_shape(pair.role).expect("a projection");
            let rank = pair.rank as i32;
            let a = Array::from_f32(&pair.a, &[rank, inputs as i32])?;
            let b = Array::from_f32(&pair.b, &[outputs as i32, rank])?;
            a.eval()?;
            b.eval()?;
            layers[pair.layer as usize].insert(pair.role, (a, b));
        }
        Ok(Self { layers, factor: file.factor })
    }

    pub fn nbytes(&self) -> u64 {
        self.layers.iter().flat_map(LayerTensors::iter).map(|(a, b)| a.nbytes() + b.nbytes()).sum()
    }
}

/// The adapters one request uses, with their scales (zero-scale ones left out).
#[derive(Default)]
pub struct ActiveAdapters(Vec<(Arc<Adapter>, f32)>);

impl ActiveAdapters {
    pub fn new(adapters: Vec<(Arc<Adapter>, f32)>) -> Self {
        Self(adapters.into_iter().filter(|(_, scale)| *scale != 0.0).collect())
    }

    /// Add every active adapter's `s · B (A x)` for layer `layer`'s `role` to `y`.
    pub fn apply(
        &self,
        layer: usize,
        role: Role,
        mut y: Array,
        x: &Array,
    ) -> Result<Array, PluginError> {
        for (adapter, scale) in &self.0 {
            if let Some((a, b)) = adapter.layers[layer].get(role) {
                let delta = x.matmul(&a.transpose(&[1, 0])?)?.matmul(&b.transpose(&[1, 0])?)?;
                y = y.add(&delta.scale(scale * adapter.factor)?)?;
            }
        }
        Ok(y)
    }
}
