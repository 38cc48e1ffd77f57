//! The SDK's dequantizer against ggml's own (`to_float`, run by `hearth-llama-logits
//! --dequantize`) on random valid blocks of every type the backends load: f16 scales of
//! a sane magnitude where the format has them, arbitrary bytes for the quants. The two
//! must agree bit for bit: both do the same f32 operations in the same order.

use half::{bf16, f16};
use hearth_backend_check::llamacpp::ggml_dequantize;
use hearth_sdk::helpers::{dequantize, GgmlType};

/// GGUF ids of F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K and BF16.
const TYPE_IDS: [u32; 11] = [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 30];

/// A small deterministic generator (splitmix64); the seed is printed.
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

/// Byte offsets of a block's f16 scales (the rest of the block is quants).
fn scale_offsets(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4K | GgmlType::Q5K => &[0, 2],
        GgmlType::Q6K => &[208],
        _ => &[],
    }
}

fn random_blocks(ty: GgmlType, blocks: usize, random: &mut Random) -> Vec<u8> {
    let (_, block_bytes) = ty.block();
    let mut bytes = Vec::new();
    for _ in 0..blocks {
        match ty {
            GgmlType::F32 => bytes.extend(random.uniform().to_le_bytes()),
            GgmlType::F16 => bytes.extend(f16::from_f32(random.uniform()).to_le_bytes()),
            GgmlType::Bf16 => bytes.extend(bf16::from_f32(random.uniform()).to_le_bytes()),
            _ => {
                let mut block: Vec<u8> = (0..block_bytes).map(|_| random.next() as u8).collect();
                for &at in scale_offsets(ty) {
                    let scale = f16::from_f32(random.uniform() * 0.1);
                    block[at..at + 2].copy_from_slice(&scale.to_le_bytes());
                }
                bytes.extend(block);
            }
        }
    }
    bytes
}

#[test]
fn the_sdk_dequantizes_every_type_the_backends_load_bit_for_bit_as_ggml_does() {
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
            as u64;
    println!("random seed {seed}");
    let mut random = Random(seed);
    for id in TYPE_IDS {
        let ty = GgmlType::from_id(id).expect("a known type id");
        let (block, _) = ty.block();
        // 4096 elements: 16 K super-blocks, 128 small blocks, 4096 single values.
        let blocks = 4096 / block as usize;
        let bytes = random_blocks(ty, blocks, &mut random);
        let mut ours = vec![0.0; 4096];
        dequantize(ty, &bytes, &mut ours).unwrap_or_else(|| panic!("the SDK refuses {ty}"));
        let ggml = ggml_dequantize(id, &bytes);
        assert_eq!(ggml.len(), ours.len(), "{ty}: element count");
        for (index, (a, b)) in ours.iter().zip(&ggml).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "{ty}: element {index}: SDK {a}, ggml {b}");
        }
    }
}
