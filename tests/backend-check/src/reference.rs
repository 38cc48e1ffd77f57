//! CPU reference versions of the kernels and of the whole forward pass of a
//! llama-family model, written straight from the model's equations in f32 values and
//! f64 sums, over weights the SDK's `dequantize` expands to f32. The model's shape is read
//! from the GGUF here too, not taken from the backend under test.

use hearth_sdk::helpers::{dequantize, Gguf};

/// A llama-family model's shape, from its GGUF metadata.
#[derive(Clone, Debug)]
pub struct Shape {
    pub n_embd: usize,
    pub n_layer: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub n_ff: usize,
    pub eps: f32,
    pub freq_base: f32,
    /// Rotate (i, i + n_rot/2) pairs (Qwen) instead of adjacent ones (Llama GGUFs).
    pub neox: bool,
    /// Per-head RMSNorm of Q and K before RoPE (Qwen3).
    pub qk_norm: bool,
}

impl Shape {
    pub fn from_gguf(gguf: &Gguf) -> Self {
        let arch = gguf.str("general.architecture").expect("general.architecture").to_string();
        let int = |name: &str| {
            gguf.u64(&format!("{arch}.{name}")).unwrap_or_else(|_| panic!("{arch}.{name}")) as usize
        };
        let optional = |name: &str, default: usize| {
            gguf.u64(&format!("{arch}.{name}")).map_or(default, |v| v as usize)
        };
        let (n_embd, heads) = (int("embedding_length"), int("attention.head_count"));
        let head_dim = optional("attention.key_length", n_embd / heads);
        Self {
            n_embd,
            n_layer: int("block_count"),
            heads,
            kv_heads: optional("attention.head_count_kv", heads),
            head_dim,
            n_rot: optional("rope.dimension_count", head_dim),
            n_ff: int("feed_forward_length"),
            eps: gguf.f64(&format!("{arch}.attention.layer_norm_rms_epsilon")).expect("rms epsilon")
                as f32,
            freq_base: gguf.f64(&format!("{arch}.rope.freq_base")).unwrap_or(10_000.0) as f32,
            neox: arch != "llama",
            qk_norm: gguf.tensor("blk.0.attn_q_norm.weight").is_some(),
        }
    }
}

/// `y[t][r] = Σ_c w[r][c] · x[t][c]`, accumulated in f64.
pub fn matmul(w: &[f32], ncols: usize, x: &[f32], ntok: usize) -> Vec<f32> {
    let rows = w.len() / ncols;
    let mut y = vec![0.0; ntok * rows];
    for t in 0..ntok {
        let xt = &x[t * ncols..(t + 1) * ncols];
        for r in 0..rows {
            let wr = &w[r * ncols..(r + 1) * ncols];
            y[t * rows + r] =
                wr.iter().zip(xt).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum::<f64>() as f32;
        }
    }
    y
}

pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let n = w.len();
    x.chunks(n)
        .flat_map(|row| {
            let mean = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / n as f64;
            let inv = 1.0 / (mean + f64::from(eps)).sqrt();
            row.iter()
                .zip(w)
                .map(move |(&v, &g)| (f64::from(v) * inv) as f32 * g)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// RoPE in place over `x` = `[tokens][heads][head_dim]`, token t at position pos0 + t.
pub fn rope(
    x: &mut [f32],
    heads: usize,
    head_dim: usize,
    n_rot: usize,
    pos0: usize,
    neox: bool,
    base: f32,
) {
    for (index, head) in x.chunks_mut(head_dim).enumerate() {
        let pos = (pos0 + index / heads) as f64;
        for pair in 0..n_rot / 2 {
            let theta = pos * f64::from(base).powf(-2.0 * pair as f64 / n_rot as f64);
            let (i0, i1) = if neox { (pair, pair + n_rot / 2) } else { (2 * pair, 2 * pair + 1) };
            let (a, b) = (f64::from(head[i0]), f64::from(head[i1]));
            head[i0] = (a * theta.cos() - b * theta.sin()) as f32;
            head[i1] = (a * theta.sin() + b * theta.cos()) as f32;
        }
    }
}

/// Causal attention: q = `[ntok][heads·hd]`, k and v = `[positions][kv_heads·hd]`.
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    heads: usize,
    kv_heads: usize,
    hd: usize,
    pos0: usize,
) -> Vec<f32> {
    let ntok = q.len() / (heads * hd);
    let kv_dim = kv_heads * hd;
    let mut out = vec![0.0; q.len()];
    for t in 0..ntok {
        for h in 0..heads {
            let kvh = h / (heads / kv_heads);
            let qh = &q[(t * heads + h) * hd..][..hd];
            let keys = pos0 + t + 1;
            let scores: Vec<f64> = (0..keys)
                .map(|j| {
                    let kj = &k[j * kv_dim + kvh * hd..][..hd];
                    qh.iter().zip(kj).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum::<f64>()
                        / (hd as f64).sqrt()
                })
                .collect();
            let max = scores.iter().copied().fold(f64::MIN, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for d in 0..hd {
                let value: f64 =
                    (0..keys).map(|j| weights[j] * f64::from(v[j * kv_dim + kvh * hd + d])).sum();
                out[(t * heads + h) * hd + d] = (value / total) as f32;
            }
        }
    }
    out
}

pub fn silu_mul(g: &[f32], u: &[f32]) -> Vec<f32> {
    g.iter().zip(u).map(|(&a, &b)| a / (1.0 + (-a).exp()) * b).collect()
}

fn tensor(gguf: &Gguf, name: &str) -> Vec<f32> {
    let info = gguf.tensor(name).unwrap_or_else(|| panic!("no tensor {name}"));
    let mut values = vec![0.0; info.elements() as usize];
    dequantize(info.ty, gguf.tensor_data(info), &mut values).expect("a type the reference reads");
    values
}

/// A LoRA adapter file (llama.cpp's GGUF format) and the scale to apply it at.
pub struct Lora<'a> {
    pub gguf: &'a Gguf,
    pub scale: f32,
}

/// The logits of the last of `tokens`, evaluated from position 0 entirely on the CPU
/// from weights dequantized to f32, with `lora`'s `scale · alpha/r · B(A x)` added to
/// every projection it adapts.
pub fn forward(gguf: &Gguf, tokens: &[u32], lora: Option<Lora<'_>>) -> Vec<f32> {
    let c = Shape::from_gguf(gguf);
    let (e, hd, heads, kv_heads, ff) = (c.n_embd, c.head_dim, c.heads, c.kv_heads, c.n_ff);
    let n = tokens.len();
    let embd = tensor(gguf, "token_embd.weight");
    let mut h: Vec<f32> =
        tokens.iter().flat_map(|&t| embd[t as usize * e..][..e].to_vec()).collect();
    for layer in 0..c.n_layer {
        let w = |part: &str| tensor(gguf, &format!("blk.{layer}.{part}.weight"));
        let project = |part: &str, ncols: usize, x: &[f32]| {
            let mut y = matmul(&w(part), ncols, x, n);
            let factor = |lora: &Lora<'_>, end: &str| {
                let name = format!("blk.{layer}.{part}.weight.lora_{end}");
                lora.gguf.tensor(&name).map(|_| tensor(lora.gguf, &name))
            };
            if let Some((lora, Some(a), Some(b))) =
                lora.as_ref().map(|lora| (lora, factor(lora, "a"), factor(lora, "b")))
            {
                let rank = a.len() / ncols;
                let alpha = lora.gguf.f64("adapter.lora.alpha").expect("alpha") as f32;
                let update = matmul(&b, rank, &matmul(&a, ncols, x, n), n);
                y.iter_mut()
                    .zip(&update)
                    .for_each(|(y, u)| *y += lora.scale * alpha / rank as f32 * u);
            }
            y
        };
        let xn = rmsnorm(&h, &w("attn_norm"), c.eps);
        let mut q = project("attn_q", e, &xn);
        let mut k = project("attn_k", e, &xn);
        let v = project("attn_v", e, &xn);
        if c.qk_norm {
            q = rmsnorm(&q, &w("attn_q_norm"), c.eps);
            k = rmsnorm(&k, &w("attn_k_norm"), c.eps);
        }
        rope(&mut q, heads, hd, c.n_rot, 0, c.neox, c.freq_base);
        rope(&mut k, kv_heads, hd, c.n_rot, 0, c.neox, c.freq_base);
        let attn = attention(&q, &k, &v, heads, kv_heads, hd, 0);
        let o = project("attn_output", heads * hd, &attn);
        h.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
        let xn = rmsnorm(&h, &w("ffn_norm"), c.eps);
        let g = silu_mul(&project("ffn_gate", e, &xn), &project("ffn_up", e, &xn));
        let d = project("ffn_down", ff, &g);
        h.iter_mut().zip(&d).for_each(|(a, b)| *a += b);
    }
    let last = rmsnorm(&h[(n - 1) * e..], &tensor(gguf, "output_norm.weight"), c.eps);
    let output =
        if gguf.tensor("output.weight").is_some() { tensor(gguf, "output.weight") } else { embd };
    matmul(&output, e, &last, 1)
}
