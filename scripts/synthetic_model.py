"""Shape-realistic synthetic Llama models for GPU speed measurements: every matrix in a
quantized type with random blocks, so a kernel reads exactly the bytes a real model of
that shape and type makes it read (speed does not depend on the values, only on the
shape and the types). The answers are nonsense; nothing checks them.

usage: synthetic_model.py tokenizer SOURCE_GGUF OUT     the tokenizer of a real model,
                                                        alone (small enough to carry)
       synthetic_model.py model SHAPE TOKENIZER_GGUF OUT [TYPE]
SHAPE: one of SHAPES below. TYPE: one of FILE_TYPES below —
  q4_0    (the default) every matrix Q4_0;
  q8_0    every matrix Q8_0;
  q4_k_m  the mix llama.cpp's quantizer makes for a Llama's Q4_K_M: Q4_K, with Q6_K for
          the output and for attn_v and ffn_down in the layers it gives more bits (and on
          the 70b shape Q5_K for the other attn_v).
The model is named synthetic-SHAPE in Q4_0, synthetic-SHAPE-TYPE in the others.
"""

import sys

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader, GGUFWriter, LlamaFileType
from tiny_models import copy_tokenizer

Q = GGMLQuantizationType

# name: (n_embd, layers, heads, kv_heads, n_ff) — Llama 3.2 1B, Llama 3.1 8B, Llama 3.3 70B.
SHAPES = {
    "1b": (2048, 16, 32, 8, 8192),
    "8b": (4096, 32, 32, 8, 14336),
    "70b": (8192, 80, 64, 8, 28672),
}

# Q4_0's f16 scales are drawn from this range: with its quants (-8 to 7) every value is
# within ±0.016, small enough that no activation overflows.
Q4_0_SCALES = (0.0005, 0.002)


def scale_range(largest_quant, times=1.0):
    """The range to draw an f16 scale from that keeps a format's values as small as
    Q4_0's, for a format whose quant times sub-block scale reaches `largest_quant` in size
    (8 in Q4_0); `times` that range for a min."""
    low, high = Q4_0_SCALES
    return low * 8 / largest_quant * times, high * 8 / largest_quant * times


# The f16 scales of each block format, as (byte offset in the block, low, high); the rest
# of a block (quants, sub-block scales and mins) is random bytes. Block sizes are gguf's
# GGML_QUANT_SIZES, the layouts as its quants.py reads them. A K-quant's dmin is drawn
# about its mean quant times d, so that the values centre on zero: activations then do
# not grow by a common offset matrix after matrix.
BLOCK_SCALES = {
    Q.Q4_0: ((0, *scale_range(8)),),  # d, then 16 bytes of 4-bit quants less 8
    Q.Q8_0: ((0, *scale_range(128)),),  # d, then 32 int8 quants
    # d, dmin, 12 bytes of 6-bit scales and mins, 128 bytes of 4-bit quants
    Q.Q4_K: ((0, *scale_range(63 * 15)), (2, *scale_range(63 * 15, 7.5))),
    # d, dmin, 12 bytes of 6-bit scales and mins, 32 bytes of fifth bits, 128 of 4 bits
    Q.Q5_K: ((0, *scale_range(63 * 31)), (2, *scale_range(63 * 31, 15.5))),
    # 128 bytes of low 4 bits, 64 of high 2 bits (quants less 32), 16 int8 scales, then d
    Q.Q6_K: ((128 + 64 + 16, *scale_range(128 * 32)),),
}


def random_blocks(rng, block_type, rows, cols):
    """A rows × cols matrix of random `block_type` blocks, its f16 scales small and
    finite (BLOCK_SCALES)."""
    elements, size = GGML_QUANT_SIZES[block_type]
    blocks = rng.integers(0, 256, size=(rows * cols // elements, size), dtype=np.uint8)
    for offset, low, high in BLOCK_SCALES[block_type]:
        scales = rng.uniform(low, high, size=blocks.shape[0]).astype(np.float16)
        blocks[:, offset:offset + 2] = scales.view(np.uint8).reshape(-1, 2)
    return blocks.reshape(rows, cols // elements * size)


def q4_k_m_type(role, layer, layers):
    """The block type llama.cpp's quantizer gives a Llama matrix in a Q4_K_M file
    (llama_tensor_get_type_impl in its src/llama-quant.cpp): Q6_K for the output, and for
    attn_v and ffn_down in the layers where use_more_bits holds (the first and last
    eighth and every third between); Q5_K for the other attn_v of an 80-layer Llama
    with grouped KV heads (the 70B it takes it for); Q4_K for the rest."""
    more_bits = layer is not None and (
        layer < layers // 8 or layer >= 7 * layers // 8 or (layer - layers // 8) % 3 == 2
    )
    if role == "output" or (role in ("attn_v", "ffn_down") and more_bits):
        return Q.Q6_K
    if role == "attn_v" and layers == 80:
        return Q.Q5_K
    return Q.Q4_K


# name: (general.file_type, the block type of a matrix from its role (its name without
# `blk.N.` and `.weight`), its layer (None outside the blocks) and the number of layers).
FILE_TYPES = {
    "q4_0": (LlamaFileType.MOSTLY_Q4_0, lambda role, layer, layers: Q.Q4_0),
    "q8_0": (LlamaFileType.MOSTLY_Q8_0, lambda role, layer, layers: Q.Q8_0),
    "q4_k_m": (LlamaFileType.MOSTLY_Q4_K_M, q4_k_m_type),
}


def write_model(shape, tokenizer_path, out, file_type="q4_0"):
    n_embd, layers, heads, kv_heads, n_ff = SHAPES[shape]
    head_dim = n_embd // heads
    ftype, type_of_matrix = FILE_TYPES[file_type]
    rng = np.random.default_rng(0)
    writer = GGUFWriter(out, "llama")
    model_id = f"synthetic-{shape}" if file_type == "q4_0" else f"synthetic-{shape}-{file_type}"
    writer.add_name(model_id)
    vocab = copy_tokenizer(GGUFReader(tokenizer_path), writer)
    writer.add_context_length(8192)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(500000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(ftype)

    def matrix(role, rows, cols, layer=None):
        name = f"{role}.weight" if layer is None else f"blk.{layer}.{role}.weight"
        matrix_type = type_of_matrix(role, layer, layers)
        writer.add_tensor(name, random_blocks(rng, matrix_type, rows, cols), raw_dtype=matrix_type)

    def norm(name):
        writer.add_tensor(name, np.ones(n_embd, dtype=np.float32))

    matrix("token_embd", vocab, n_embd)
    for i in range(layers):
        norm(f"blk.{i}.attn_norm.weight")
        matrix("attn_q", heads * head_dim, n_embd, i)
        matrix("attn_k", kv_heads * head_dim, n_embd, i)
        matrix("attn_v", kv_heads * head_dim, n_embd, i)
        matrix("attn_output", n_embd, heads * head_dim, i)
        norm(f"blk.{i}.ffn_norm.weight")
        matrix("ffn_gate", n_ff, n_embd, i)
        matrix("ffn_up", n_ff, n_embd, i)
        matrix("ffn_down", n_embd, n_ff, i)
    norm("output_norm.weight")
    matrix("output", vocab, n_embd)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_tokenizer(source, out):
    writer = GGUFWriter(out, "llama")
    copy_tokenizer(GGUFReader(source), writer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main():
    match sys.argv[1:]:
        case ["tokenizer", source, out]:
            write_tokenizer(source, out)
        case ["model", shape, tokenizer, out] if shape in SHAPES:
            write_model(shape, tokenizer, out)
        case ["model", shape, tokenizer, out, file_type] if (
            shape in SHAPES and file_type in FILE_TYPES
        ):
            write_model(shape, tokenizer, out, file_type)
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    main()
