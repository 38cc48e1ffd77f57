//! ggml tensor types as GGUF files name them: block geometry for size checks, and a
//! CPU dequantizer for the common formats (the decoders are in `ggml_quants`), which
//! backends use as a reference.

use half::{bf16, f16};

use super::ggml_quants as quants;

/// A ggml tensor element type, by its GGUF type id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    Iq2Xxs,
    Iq2Xs,
    Iq3Xxs,
    Iq1S,
    Iq4Nl,
    Iq3S,
    Iq2S,
    Iq4Xs,
    I8,
    I16,
    I32,
    I64,
    F64,
    Iq1M,
    Bf16,
    Tq1_0,
    Tq2_0,
    Mxfp4,
}

impl GgmlType {
    /// The type for a GGUF type id, or `None` for an id this reader does not know.
    pub fn from_id(id: u32) -> Option<Self> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2K,
            11 => Q3K,
            12 => Q4K,
            13 => Q5K,
            14 => Q6K,
            15 => Q8K,
            16 => Iq2Xxs,
            17 => Iq2Xs,
            18 => Iq3Xxs,
            19 => Iq1S,
            20 => Iq4Nl,
            21 => Iq3S,
            22 => Iq2S,
            23 => Iq4Xs,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            29 => Iq1M,
            30 => Bf16,
            34 => Tq1_0,
            35 => Tq2_0,
            39 => Mxfp4,
            _ => return None,
        })
    }

    /// ggml's name of the type, as llama.cpp prints it.
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2K => "Q2_K",
            Q3K => "Q3_K",
            Q4K => "Q4_K",
            Q5K => "Q5_K",
            Q6K => "Q6_K",
            Q8K => "Q8_K",
            Iq2Xxs => "IQ2_XXS",
            Iq2Xs => "IQ2_XS",
            Iq3Xxs => "IQ3_XXS",
            Iq1S => "IQ1_S",
            Iq4Nl => "IQ4_NL",
            Iq3S => "IQ3_S",
            Iq2S => "IQ2_S",
            Iq4Xs => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            Iq1M => "IQ1_M",
            Bf16 => "BF16",
            Tq1_0 => "TQ1_0",
            Tq2_0 => "TQ2_0",
            Mxfp4 => "MXFP4",
        }
    }

    /// (elements per block, bytes per block): a row's element count must be a multiple
    /// of the first, and its size is `elements / block * bytes`.
    pub fn block(self) -> (u64, u64) {
        use GgmlType::*;
        match self {
            F32 | I32 => (1, 4),
            F16 | Bf16 | I16 => (1, 2),
            I8 => (1, 1),
            I64 | F64 => (1, 8),
            Q4_0 | Iq4Nl => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            Mxfp4 => (32, 17),
            Q2K => (256, 84),
            Q3K | Iq3S => (256, 110),
            Q4K => (256, 144),
            Q5K => (256, 176),
            Q6K => (256, 210),
            Q8K => (256, 292),
            Iq2Xxs | Tq2_0 => (256, 66),
            Iq2Xs => (256, 74),
            Iq3Xxs => (256, 98),
            Iq1S => (256, 50),
            Iq2S => (256, 82),
            Iq4Xs => (256, 136),
            Iq1M => (256, 56),
            Tq1_0 => (256, 54),
        }
    }

    /// True for the types [`dequantize`] understands.
    pub fn can_dequantize(self) -> bool {
        matches!(
            self,
            GgmlType::F32
                | GgmlType::F16
                | GgmlType::Bf16
                | GgmlType::Q4_0
                | GgmlType::Q4_1
                | GgmlType::Q5_0
                | GgmlType::Q5_1
                | GgmlType::Q8_0
                | GgmlType::Q4K
                | GgmlType::Q5K
                | GgmlType::Q6K
        )
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Expand `bytes` of type `ty` into `out`, whose length is the element count.
///
/// Returns `None` when the type is not one of [`GgmlType::can_dequantize`]'s or the
/// lengths disagree. The values are bit for bit those of ggml's `dequantize_row_*`.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Option<()> {
    if !ty.can_dequantize() {
        return None;
    }
    let (block, block_bytes) = ty.block();
    let (block, block_bytes) = (block as usize, block_bytes as usize);
    if out.len() % block != 0 || bytes.len() != out.len() / block * block_bytes {
        return None;
    }
    for (data, values) in bytes.chunks_exact(block_bytes).zip(out.chunks_exact_mut(block)) {
        match ty {
            GgmlType::F32 => values[0] = f32::from_le_bytes([data[0], data[1], data[2], data[3]]),
            GgmlType::F16 => values[0] = f16::from_le_bytes([data[0], data[1]]).to_f32(),
            GgmlType::Bf16 => values[0] = bf16::from_le_bytes([data[0], data[1]]).to_f32(),
            GgmlType::Q4_0 | GgmlType::Q4_1 => quants::q4(data, ty == GgmlType::Q4_1, values),
            GgmlType::Q5_0 | GgmlType::Q5_1 => quants::q5(data, ty == GgmlType::Q5_1, values),
            GgmlType::Q8_0 => quants::q8_0(data, values),
            GgmlType::Q4K | GgmlType::Q5K => quants::q45_k(data, ty == GgmlType::Q5K, values),
            GgmlType::Q6K => quants::q6_k(data, values),
            _ => unreachable!("can_dequantize admits only the types above"),
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_1_blocks_expand_low_nibbles_first_then_high_nibbles() {
        let mut block = Vec::new();
        block.extend_from_slice(&f16::from_f32(0.5).to_le_bytes());
        block.extend_from_slice(&f16::from_f32(-1.0).to_le_bytes());
        block.extend((0..16u8).map(|index| index | ((15 - index) << 4)));
        let mut out = [0.0; 32];
        dequantize(GgmlType::Q4_1, &block, &mut out).unwrap();
        assert_eq!(out[0], -1.0);
        assert_eq!(out[3], 0.5);
        assert_eq!(out[16], 6.5);
        assert_eq!(out[31], -1.0);
    }

    #[test]
    fn q8_0_blocks_are_signed_bytes_times_the_scale() {
        let mut block = f16::from_f32(0.25).to_le_bytes().to_vec();
        block.extend((0..32i8).map(|index| (index - 16) as u8));
        let mut out = [0.0; 32];
        dequantize(GgmlType::Q8_0, &block, &mut out).unwrap();
        assert_eq!(out[0], -4.0);
        assert_eq!(out[31], 3.75);
    }

    #[test]
    fn q5_0_blocks_take_the_fifth_bit_of_element_i_from_bit_i_of_the_high_word() {
        let mut block = f16::from_f32(2.0).to_le_bytes().to_vec();
        block.extend((1u32 | 1 << 16 | 1 << 31).to_le_bytes());
        block.extend([0x21; 16]);
        let mut out = [0.0; 32];
        dequantize(GgmlType::Q5_0, &block, &mut out).unwrap();
        assert_eq!(out[0], 2.0 * (17.0 - 16.0));
        assert_eq!(out[1], 2.0 * (1.0 - 16.0));
        assert_eq!(out[16], 2.0 * (18.0 - 16.0));
        assert_eq!(out[31], 2.0 * (18.0 - 16.0));
        assert_eq!(out[30], 2.0 * (2.0 - 16.0));
    }

    #[test]
    fn q6_k_blocks_scale_each_16_elements_by_their_own_signed_scale() {
        let mut block = vec![0u8; 210];
        block[0] = 0x05; // element 0: low nibble 5, element 64: high nibble 0
        block[128] = 0b11; // element 0: high bits 3, so q = 53 − 32
        block[192] = (-2i8) as u8; // scale of elements 0..16
        block[208..210].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        let mut out = [0.0; 256];
        dequantize(GgmlType::Q6K, &block, &mut out).unwrap();
        assert_eq!(out[0], 0.5 * -2.0 * 21.0);
        assert_eq!(out[1], 0.5 * -2.0 * -32.0);
        assert_eq!(out[16], 0.0);
    }

    #[test]
    fn dequantize_refuses_unknown_formats_and_mismatched_lengths() {
        assert!(dequantize(GgmlType::Q3K, &[0; 110], &mut [0.0; 256]).is_none());
        assert!(dequantize(GgmlType::Q8_0, &[0; 33], &mut [0.0; 32]).is_none());
    }
}
