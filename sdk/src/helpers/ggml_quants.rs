//! Decoders of ggml's block formats, one block at a time, following ggml's
//! `dequantize_row_*` to the bit: the same operations in the same order, so that a
//! backend checked against these agrees with llama.cpp exactly.
//!
//! Every block starts (or, for Q6_K, ends) with f16 scales; the quants follow. In the
//! 32-element formats the low nibbles hold elements 0..16 and the high nibbles 16..32.
//! The K formats are super-blocks of 256 elements with a scale (and, for Q4_K/Q5_K, a
//! min) per sub-block, themselves quantized against the super-block's f16 scales.

use half::f16;

fn half_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Q4_0 (18 bytes): f16 `d`, 16 bytes of nibbles; `x = d·(q − 8)`.
/// Q4_1 (20 bytes): f16 `d`, f16 `m`, 16 bytes of nibbles; `x = d·q + m`.
pub(crate) fn q4(block: &[u8], with_min: bool, out: &mut [f32]) {
    let scale = half_at(block, 0);
    let min = with_min.then(|| half_at(block, 2));
    let quants = if with_min { &block[4..20] } else { &block[2..18] };
    // (q − 8)·d, not q·d − 8d, as ggml computes it: a zero keeps the sign of −d.
    let value = |q: u8| match min {
        Some(min) => f32::from(q) * scale + min,
        None => (i32::from(q) - 8) as f32 * scale,
    };
    for (index, byte) in quants.iter().enumerate() {
        out[index] = value(byte & 0x0f);
        out[index + 16] = value(byte >> 4);
    }
}

/// Q5_0 (22 bytes): f16 `d`, 32 fifth bits as a little-endian u32 (bit `i` for element
/// `i`), 16 bytes of nibbles; `x = d·(q − 16)`.
/// Q5_1 (24 bytes): f16 `d`, f16 `m`, the fifth bits, the nibbles; `x = d·q + m`.
pub(crate) fn q5(block: &[u8], with_min: bool, out: &mut [f32]) {
    let scale = half_at(block, 0);
    let (min, at) = if with_min { (Some(half_at(block, 2)), 4) } else { (None, 2) };
    let high = u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]]);
    let quants = &block[at + 4..at + 20];
    let value = |q: u32| match min {
        Some(min) => q as f32 * scale + min,
        None => (q as i32 - 16) as f32 * scale,
    };
    for (index, byte) in quants.iter().enumerate() {
        out[index] = value(u32::from(byte & 0x0f) | ((high >> index) & 1) << 4);
        out[index + 16] = value(u32::from(byte >> 4) | ((high >> (index + 16)) & 1) << 4);
    }
}

/// Q8_0 (34 bytes): f16 `d`, 32 signed bytes; `x = d·q`.
pub(crate) fn q8_0(block: &[u8], out: &mut [f32]) {
    let scale = half_at(block, 0);
    for (value, byte) in out.iter_mut().zip(&block[2..34]) {
        *value = f32::from(*byte as i8) * scale;
    }
}

/// The 6-bit scale and min of sub-block `j` (0..8) from Q4_K/Q5_K's 12 packed bytes:
/// sub-blocks 0..4 keep theirs in the low 6 bits of bytes `j` and `j + 4`; sub-blocks
/// 4..8 in the nibbles of byte `j + 4`, topped with the high 2 bits of bytes `j − 4`
/// (scale) and `j` (min).
pub fn k_scale_min(scales: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    }
}

/// Q4_K (144 bytes): f16 `d`, f16 `dmin`, 12 bytes of 6-bit sub-block scales and mins,
/// 128 bytes of nibbles. Each 64 elements share 32 bytes: the low nibbles are sub-block
/// `2i`, the high ones `2i + 1`; `x = (d·sc)·q − dmin·m`.
/// Q5_K (176 bytes): the same, with 32 bytes of fifth bits before the nibbles: bit
/// `2i` of byte `l` tops element `l` of sub-block `2i`, bit `2i + 1` that of `2i + 1`.
pub(crate) fn q45_k(block: &[u8], five_bits: bool, out: &mut [f32]) {
    let (d, dmin) = (half_at(block, 0), half_at(block, 2));
    let scales = &block[4..16];
    let (high, quants) =
        if five_bits { (&block[16..48], &block[48..176]) } else { (&[][..], &block[16..144]) };
    for (pair, bytes) in quants.chunks_exact(32).enumerate() {
        for half in 0..2 {
            let sub = 2 * pair + half;
            let (sc, m) = k_scale_min(scales, sub);
            let (scale, min) = (d * f32::from(sc), dmin * f32::from(m));
            for (l, byte) in bytes.iter().enumerate() {
                let mut q = if half == 0 { byte & 0x0f } else { byte >> 4 };
                if five_bits && high[l] & (1 << sub) != 0 {
                    q += 16;
                }
                out[sub * 32 + l] = scale * f32::from(q) - min;
            }
        }
    }
}

/// Q6_K (210 bytes): 128 bytes of low nibbles, 64 bytes of high bit pairs, 16 signed
/// 8-bit scales (one per 16 elements), then f16 `d`; `x = (d·sc)·(q − 32)`. Each half of
/// 128 elements has 64 nibble bytes and 32 high bytes: its element `32k + l` (k = 0..4,
/// l = 0..32) takes a nibble of byte `l` (k even) or `l + 32` (k odd), the low nibble
/// for k < 2 and the high one after, and bits `2k, 2k + 1` of high byte `l`.
pub(crate) fn q6_k(block: &[u8], out: &mut [f32]) {
    let d = half_at(block, 208);
    for half in 0..2 {
        let low = &block[half * 64..][..64];
        let high = &block[128 + half * 32..][..32];
        let scales = &block[192 + half * 8..][..8];
        let values = &mut out[half * 128..][..128];
        for l in 0..32 {
            for k in 0..4 {
                let byte = low[l + 32 * (k % 2)];
                let nibble = if k < 2 { byte & 0x0f } else { byte >> 4 };
                let q = (nibble | ((high[l] >> (2 * k)) & 3) << 4) as i8 - 32;
                let sc = scales[l / 16 + 2 * k] as i8;
                values[l + 32 * k] = d * f32::from(sc) * f32::from(q);
            }
        }
    }
}
