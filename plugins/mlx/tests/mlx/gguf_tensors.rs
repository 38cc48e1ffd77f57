//! GGUF block formats mapped to MLX arrays ([`hearth_mlx::gguf_tensors`]) against the
//! SDK's dequantizer (itself checked bit for bit against ggml in backend-check): MLX's
//! `dequantize` of the mapped arrays must give the SDK's values exactly, since each
//! mapped scale and bias reproduces ggml's own products and sums, up to the sign of a
//! zero: ggml's `(q − 8)·d` is −0 for q = 8 and a negative d, MLX's `d·q − 8d` is +0.

use half::{bf16, f16};
use hearth_mlx::ffi::Array;
use hearth_mlx::forward::{Forward, KvCache};
use hearth_mlx::gguf_tensors::{self, Mapped};
use hearth_mlx::lora::ActiveAdapters;
use hearth_mlx::weights::{Tensors, Weights};
use hearth_model::Config;
use hearth_sdk::helpers::{dequantize, GgmlType, Gguf};

use crate::common::{model_path, smollm2_path};

/// A small deterministic generator (splitmix64).
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [−1, 1).
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
    }
}

/// Random bytes of a valid tensor of `ty`: f16 scales of a sane magnitude, arbitrary
/// quants.
fn random_tensor(ty: GgmlType, elements: usize, random: &mut Random) -> Vec<u8> {
    let (block, block_bytes) = ty.block();
    let scales: &[usize] = match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4K | GgmlType::Q5K => &[0, 2],
        GgmlType::Q6K => &[208],
        _ => &[],
    };
    let mut bytes = Vec::new();
    for _ in 0..elements / block as usize {
        match ty {
            GgmlType::F32 => bytes.extend(random.uniform().to_le_bytes()),
            GgmlType::F16 => bytes.extend(f16::from_f32(random.uniform()).to_le_bytes()),
            GgmlType::Bf16 => bytes.extend(bf16::from_f32(random.uniform()).to_le_bytes()),
            _ => {
                let mut block: Vec<u8> = (0..block_bytes).map(|_| random.next() as u8).collect();
                for &at in scales {
                    let scale = f16::from_f32(random.uniform() * 0.1);
                    block[at..at + 2].copy_from_slice(&scale.to_le_bytes());
                }
                bytes.extend(block);
            }
        }
    }
    bytes
}

/// Equal values (f32 equality: NaN never, −0 = +0).
fn assert_exact(ty: GgmlType, mlx: &[f32], sdk: &[f32]) {
    assert_eq!(mlx.len(), sdk.len(), "{ty}: element count");
    for (index, (a, b)) in mlx.iter().zip(sdk).enumerate() {
        assert!(a == b, "{ty}: element {index}: MLX {a}, SDK {b}");
    }
}

#[test]
fn mlx_dequantizes_every_mapped_format_to_exactly_the_sdks_values() {
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
            as u64;
    println!("random seed {seed}");
    let mut random = Random(seed);
    let (rows, cols) = (3usize, 512usize);
    for ty in hearth_mlx::weights::SUPPORTED_TYPES {
        let bytes = random_tensor(ty, rows * cols, &mut random);
        let mut expected = vec![0.0; rows * cols];
        dequantize(ty, &bytes, &mut expected).unwrap();
        let mapped = gguf_tensors::map(ty, cols, rows, &bytes, true).unwrap();
        let values = match mapped {
            Mapped::Quantized { words, scales, biases, bits } => {
                assert_eq!(Some(bits), gguf_tensors::affine_bits(ty), "{ty}");
                let (r, c) = (rows as i32, cols as i32);
                let w = Array::from_u32(&words, &[r, c * bits / 32]).unwrap();
                let scales = Array::from_f32(&scales, &[r, c / 32]).unwrap();
                let biases = Array::from_f32(&biases, &[r, c / 32]).unwrap();
                let dense = w.dequantize(&scales, &biases, 32, bits).unwrap();
                // The product the forward pass runs, against the dense one (sums in
                // another order, so within a bound rather than exact).
                let x: Vec<f32> = (0..2 * cols).map(|_| random.uniform()).collect();
                let x = Array::from_f32(&x, &[2, c]).unwrap();
                let product = x.quantized_matmul(&w, &scales, &biases, 32, bits).unwrap();
                let reference = x.matmul(&dense.transpose(&[1, 0]).unwrap()).unwrap();
                let (product, reference) =
                    (product.to_f32_vec().unwrap(), reference.to_f32_vec().unwrap());
                let scale = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let error =
                    product.iter().zip(&reference).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
                        / scale;
                assert!(error < 1e-5, "{ty}: quantized_matmul relative error {error}");
                dense.to_f32_vec().unwrap()
            }
            Mapped::Dense(values) => {
                assert_eq!(gguf_tensors::affine_bits(ty), None, "{ty} maps to MLX's form");
                values
            }
        };
        assert_exact(ty, &values, &expected);
    }
}

#[test]
fn a_q4_k_m_gemma3_file_loads_and_its_first_rows_of_each_type_match_the_sdk() {
    let gguf = Gguf::open(model_path("gemma3-270m/gemma-3-270m-q4_k_m.gguf")).unwrap();
    let (arrays, quantized) = gguf_tensors::load(&gguf).unwrap();
    let mut checked = Vec::new();
    for info in gguf.tensors() {
        let array = &arrays[&info.name];
        if info.dims.len() != 2 || checked.contains(&info.ty) {
            continue;
        }
        checked.push(info.ty);
        // The first two rows, as MLX gives them and as the SDK expands them.
        let (block, block_bytes) = info.ty.block();
        let cols = info.dims[0] as usize;
        let row_bytes = cols / block as usize * block_bytes as usize;
        let mut expected = vec![0.0; 2 * cols];
        dequantize(info.ty, &gguf.tensor_data(info)[..2 * row_bytes], &mut expected).unwrap();
        let rows = |array: &Array| array.slice(&[0, 0], &[2, array.shape()[1]]).unwrap();
        let base = info.name.strip_suffix(".weight").unwrap_or(&info.name);
        let values = match quantized.get(base) {
            Some(&(group_size, bits)) => rows(array)
                .dequantize(
                    &rows(&arrays[&format!("{base}.scales")]),
                    &rows(&arrays[&format!("{base}.biases")]),
                    group_size,
                    bits,
                )
                .unwrap(),
            None => rows(array),
        };
        assert_exact(info.ty, &values.to_f32_vec().unwrap(), &expected);
    }
    // The file's weight types (its F32 tensors are norms, 1-D).
    for ty in [GgmlType::Q4K, GgmlType::Q5_0, GgmlType::Q6K, GgmlType::Q8_0] {
        assert!(checked.contains(&ty), "no 2-D {ty} tensor checked: {checked:?}");
    }
}

#[test]
fn smollm2_read_through_the_sdk_gives_the_logits_mx_load_gguf_gives() {
    let gguf = Gguf::open(smollm2_path()).unwrap();
    let config = Config::from_gguf(&gguf).unwrap();
    let (arrays, quantized) = gguf_tensors::load(&gguf).unwrap();
    let ours = Weights::assemble(Tensors::new(arrays, quantized, None), &config).unwrap();
    let mlx = Weights::assemble(Tensors::from_gguf(&gguf).unwrap(), &config).unwrap();
    let logits = |weights: &Weights| {
        let adapters = ActiveAdapters::default();
        let forward = Forward { config: &config, weights, adapters: &adapters };
        forward.run(&mut KvCache::default(), &[1, 504, 3458, 282, 4649, 314]).unwrap()
    };
    // The same weights, exactly: the same logits, bit for bit.
    let (ours, mlx) = (logits(&ours), logits(&mlx));
    assert_eq!(ours.len(), config.vocab as usize);
    assert_eq!(ours, mlx);
}
