//! LoRA adapters on the device, applied per request. The file is read and checked by
//! the model layer ([`LoraFile`]); this module uploads its pairs.
//!
//! Both factors run through the ordinary matmul kernel, which needs rows of a multiple
//! of 32 elements: `B`'s rows are `r` long, so the rank is padded to [`RANK_PAD`] with
//! zero rows of `A` and zero columns of `B`. That changes no value and costs little:
//! the padded factors are still tiny next to the base weights.

use hearth_model::{Config, LayerTensors, LoraFile, Role};
use hearth_sdk::helpers::GgmlType;
use hearth_sdk::PluginError;

use crate::device::Gpu;
use crate::kernels::Weight;

/// The rank every adapter is padded to: a whole matmul block.
pub const RANK_PAD: u32 = 32;

/// One projection's low-rank update, padded to [`RANK_PAD`].
pub struct LoraPair {
    /// RANK_PAD × in.
    pub a: Weight,
    /// out × RANK_PAD.
    pub b: Weight,
}

/// A loaded adapter: per layer, per projection, the pair if the adapter has one.
pub struct LoraAdapter {
    /// `alpha / r`, the factor llama.cpp applies on top of the request's scale.
    pub factor: f32,
    layers: Vec<LayerTensors<LoraPair>>,
}

impl LoraAdapter {
    pub fn pair(&self, layer: usize, role: Role) -> Option<&LoraPair> {
        self.layers[layer].get(role)
    }

    /// Read and check the adapter at `path` against the base model, then upload it.
    pub fn load(gpu: &Gpu, config: &Config, name: &str, path: &str) -> Result<Self, PluginError> {
        let file = LoraFile::read(name, path, config)?;
        let mut layers: Vec<LayerTensors<LoraPair>> =
            (0..config.n_layer).map(|_| LayerTensors::default()).collect();
        for pair in file.pairs {
            let rank = pair.rank as usize;
            if pair.rank > RANK_PAD {
                return Err(PluginError::invalid_request(format!(
                    "adapter `{name}` ({path}): rank {rank}; the WebGPU backend runs ranks up to {RANK_PAD}"
                )));
            }
            let (inputs, outputs) = config.projection_shape(pair.role).expect("a projection");
            // A: r rows of `inputs`, then zero rows up to the padded rank.
            let mut a = pair.a;
            a.resize(RANK_PAD as usize * inputs as usize, 0.0);
            // B: `outputs` rows of r, each widened with zeros to the padded rank.
            let mut b = vec![0.0f32; outputs as usize * RANK_PAD as usize];
            for (row, padded) in
                pair.b.chunks_exact(rank).zip(b.chunks_exact_mut(RANK_PAD as usize))
            {
                padded[..rank].copy_from_slice(row);
            }
            let upload = |end: &str, values: &[f32], ncols: u32, nrows: u32| {
                let label = format!("blk.{}.{}.lora_{end}", pair.layer, pair.role.gguf_name());
                Weight::upload(
                    gpu,
                    &label,
                    GgmlType::F32,
                    u64::from(ncols),
                    u64::from(nrows),
                    bytemuck::cast_slice(values),
                )
            };
            let uploaded = LoraPair {
                a: upload("a", &a, inputs, RANK_PAD)?,
                b: upload("b", &b, RANK_PAD, outputs)?,
            };
            layers[pair.layer as usize].insert(pair.role, uploaded);
        }
        Ok(Self { factor: file.factor, layers })
    }
}
