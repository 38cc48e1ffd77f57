//! GGUF tensors as MLX arrays, read with the SDK's reader, for files holding types
//! that `mx::load_gguf` does not decode (it reads only F32, F16, Q4_0, Q4_1 and Q8_0;
//! a Q4_K_M file mixes Q4_K with Q5_0, Q6_K and Q8_0).
//!
//! A block format that is an affine map of its quants in groups of 32 becomes MLX's
//! affine quantization exactly, `W = scales·q + biases` per group of 32 with the quants
//! repacked: Q4_0 (`d`, `−8d`), Q4_1 (`d`, `m`), Q5_0 (`d`, `−16d`), Q5_1 (`d`, `m`),
//! Q8_0 (`d`, `−128d` over `q + 128`) and, per 32-element sub-block, Q4_K and Q5_K
//! (`d·sc`, `−dmin·m`). Each product and sum is the one ggml computes, so MLX's
//! `dequantize` gives ggml's values bit for bit. Q6_K (a scale per 16 elements) and
//! the float types have no such form and become f32.
//!
//! MLX packs a group's quants as one little-endian bit stream (element `i` at bits
//! `i·bits..(i + 1)·bits`, byte by byte, the low bits first), in uint32 words; for 4 and
//! 8 bits that is simply `32 / bits` quants per word, the first in the low bits.

use std::collections::HashMap;

use hearth_sdk::helpers::ggml_quants::k_scale_min;
use hearth_sdk::helpers::{dequantize, GgmlType, Gguf};
use hearth_sdk::PluginError;

use crate::ffi::Array;

/// The types `mx::load_gguf` decodes itself; a file of these only is left to it.
pub const MLX_GGUF_TYPES: [GgmlType; 5] =
    [GgmlType::F32, GgmlType::F16, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0];

/// One GGUF tensor in MLX's terms.
pub enum Mapped {
    /// Values in f32, row-major.
    Dense(Vec<f32>),
    /// Affine-quantized rows: `words` holds `cols·bits/32` uint32 per row, `scales` and
    /// `biases` one value per row and group of 32.
    Quantized { words: Vec<u32>, scales: Vec<f32>, biases: Vec<f32>, bits: i32 },
}

/// The bits of `ty`'s quants when it maps exactly to MLX's affine quantization.
pub fn affine_bits(ty: GgmlType) -> Option<i32> {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4K => Some(4),
        GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q5K => Some(5),
        GgmlType::Q8_0 => Some(8),
        _ => None,
    }
}

fn half_at(bytes: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// One group of 32 quants with its scale and bias.
struct Group {
    quants: [u8; 32],
    scale: f32,
    bias: f32,
}

/// Nibble `index` (0..32) of a 32-element block: low nibbles first, then high ones.
fn nibble(quants: &[u8], index: usize) -> u8 {
    if index < 16 {
        quants[index] & 0x0f
    } else {
        quants[index - 16] >> 4
    }
}

/// The groups of one block of `ty` (an affine type), in element order.
fn groups(ty: GgmlType, block: &[u8], out: &mut Vec<Group>) {
    let d = half_at(block, 0);
    let mut group = |scale: f32, bias: f32, quant: &dyn Fn(usize) -> u8| {
        out.push(Group { quants: std::array::from_fn(quant), scale, bias });
    };
    match ty {
        GgmlType::Q4_0 => group(d, -8.0 * d, &|i| nibble(&block[2..18], i)),
        GgmlType::Q4_1 => group(d, half_at(block, 2), &|i| nibble(&block[4..20], i)),
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let at = if ty == GgmlType::Q5_1 { 4 } else { 2 };
            let high = u32::from_le_bytes(block[at..at + 4].try_into().expect("4 bytes"));
            let bias = if ty == GgmlType::Q5_1 { half_at(block, 2) } else { -16.0 * d };
            let quants = &block[at + 4..at + 20];
            group(d, bias, &|i| nibble(quants, i) | (((high >> i) & 1) as u8) << 4);
        }
        GgmlType::Q8_0 => group(d, -128.0 * d, &|i| (block[2 + i] as i8 as i16 + 128) as u8),
        GgmlType::Q4K | GgmlType::Q5K => {
            let dmin = half_at(block, 2);
            let five_bits = ty == GgmlType::Q5K;
            let high = &block[16..48];
            let quants = if five_bits { &block[48..176] } else { &block[16..144] };
            for sub in 0..8 {
                let (sc, m) = k_scale_min(&block[4..16], sub);
                let bytes = &quants[sub / 2 * 32..][..32];
                group(d * f32::from(sc), -(dmin * f32::from(m)), &|l| {
                    let nibble = if sub % 2 == 0 { bytes[l] & 0x0f } else { bytes[l] >> 4 };
                    let top = if five_bits { (high[l] >> sub) & 1 } else { 0 };
                    nibble | top << 4
                });
            }
        }
        _ => unreachable!("groups() is called for affine types only"),
    }
}

/// Append `quants` (each below `1 << bits`) to `words` as MLX packs them.
fn pack(quants: &[u8; 32], bits: u32, words: &mut Vec<u32>) {
    let (mut pending, mut filled) = (0u64, 0u32);
    for &quant in quants {
        pending |= u64::from(quant) << filled;
        filled += bits;
        if filled >= 32 {
            words.push(pending as u32);
            pending >>= 32;
            filled -= 32;
        }
    }
}

/// The MLX form of a tensor of `ty` with `rows` rows of `cols` elements, whose bytes
/// are `data`: quantized when `quantize` and the type maps exactly, f32 otherwise.
/// `None` when the SDK cannot read the type or the sizes disagree.
pub fn map(ty: GgmlType, cols: usize, rows: usize, data: &[u8], quantize: bool) -> Option<Mapped> {
    let (block, block_bytes) = ty.block();
    let bits = affine_bits(ty).filter(|_| quantize);
    let Some(bits) = bits else {
        let mut values = vec![0.0; cols * rows];
        dequantize(ty, data, &mut values)?;
        return Some(Mapped::Dense(values));
    };
    if cols % block as usize != 0
        || data.len() != cols * rows / block as usize * block_bytes as usize
    {
        return None;
    }
    let groups_count = cols * rows / 32;
    let mut all = Vec::with_capacity(groups_count);
    for block in data.chunks_exact(block_bytes as usize) {
        groups(ty, block, &mut all);
    }
    let mut words = Vec::with_capacity(groups_count * bits as usize);
    for group in &all {
        pack(&group.quants, bits as u32, &mut words);
    }
    Some(Mapped::Quantized {
        words,
        scales: all.iter().map(|group| group.scale).collect(),
        biases: all.iter().map(|group| group.bias).collect(),
        bits,
    })
}

/// Every tensor of `gguf` as MLX arrays, under the names `mx::load_gguf` gives them
/// (a quantized `X.weight` comes with `X.scales` and `X.biases`), and the
/// `(group_size, bits)` of each quantized weight by its base name `X`.
#[allow(clippy::type_complexity)] // the two maps `Tensors::new` takes
pub fn load(
    gguf: &Gguf,
) -> Result<(HashMap<String, Array>, HashMap<String, (i32, i32)>), PluginError> {
    let mut arrays = HashMap::new();
    let mut quantized = HashMap::new();
    for info in gguf.tensors() {
        let cols = info.dims.first().copied().unwrap_or(1);
        let rows = info.elements() / cols.max(1);
        let shape: Vec<i32> = info
            .dims
            .iter()
            .rev()
            .map(|&dim| i32::try_from(dim))
            .collect::<Result<_, _>>()
            .map_err(|_| {
                PluginError::model_file(format!("tensor `{}` is too large for MLX", info.name))
            })?;
        // Matrices and stacks of them (a mixture of experts' 3-D tensors).
        let base = info.name.strip_suffix(".weight").filter(|_| info.dims.len() >= 2);
        let mapped =
            map(info.ty, cols as usize, rows as usize, gguf.tensor_data(info), base.is_some())
                .ok_or_else(|| {
                    PluginError::unsupported(format!(
                        "tensor `{}` has type {}, which the MLX backend does not read",
                        info.name, info.ty
                    ))
                })?;
        match (mapped, base) {
            (Mapped::Quantized { words, scales, biases, bits }, Some(base)) => {
                let (cols, lead) = shape.split_last().expect("a matrix has dimensions");
                let last = |width: i32| [lead, &[width]].concat();
                arrays.insert(info.name.clone(), Array::from_u32(&words, &last(cols * bits / 32))?);
                arrays
                    .insert(format!("{base}.scales"), Array::from_f32(&scales, &last(cols / 32))?);
                arrays
                    .insert(format!("{base}.biases"), Array::from_f32(&biases, &last(cols / 32))?);
                quantized.insert(base.to_string(), (32, bits));
            }
            (Mapped::Dense(values), _) => {
                arrays.insert(info.name.clone(), Array::from_f32(&values, &shape)?);
            }
            (Mapped::Quantized { .. }, None) => unreachable!("only weights are quantized"),
        }
    }
    Ok((arrays, quantized))
}
