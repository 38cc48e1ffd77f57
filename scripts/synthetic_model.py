"""Shape-realistic synthetic Llama models for GPU speed measurements: every matrix in
Q4_0 with random blocks, so a kernel reads exactly the bytes a real model of that shape
makes it read (speed does not depend on the values, only on the shape and the type).
The answers are nonsense; nothing checks them.

usage: synthetic_model.py tokenizer SOURCE_GGUF OUT     the tokenizer of a real model,
                                                        alone (small enough to carry)
       synthetic_model.py model SHAPE TOKENIZER_GGUF OUT
SHAPE: one of SHAPES below.
"""

import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
from tiny_models import copy_tokenizer

# name: (n_embd, layers, heads, kv_heads, n_ff) — Llama 3.2 1B, Llama 3.1 8B, Llama 3.3 70B.
SHAPES = {
    "1b": (2048, 16, 32, 8, 8192),
    "8b": (4096, 32, 32, 8, 14336),
    "70b": (8192, 80, 64, 8, 28672),
}
Q4_0_BLOCK, Q4_0_BYTES = 32, 18


def q4_0(rng, rows, cols):
    """Random Q4_0 blocks whose f16 scales are small and finite, so no value overflows."""
    blocks = rng.integers(0, 256, size=(rows * cols // Q4_0_BLOCK, Q4_0_BYTES), dtype=np.uint8)
    scales = rng.uniform(0.0005, 0.002, size=blocks.shape[0]).astype(np.float16)
    blocks[:, :2] = scales.view(np.uint8).reshape(-1, 2)
    return blocks.reshape(rows, cols // Q4_0_BLOCK * Q4_0_BYTES)


def write_model(shape, tokenizer_path, out):
    n_embd, layers, heads, kv_heads, n_ff = SHAPES[shape]
    head_dim = n_embd // heads
    rng = np.random.default_rng(0)
    writer = GGUFWriter(out, "llama")
    writer.add_name(f"synthetic-{shape}")
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
    writer.add_file_type(2)  # MOSTLY_Q4_0

    def matrix(name, rows, cols):
        writer.add_tensor(name, q4_0(rng, rows, cols), raw_dtype=GGMLQuantizationType.Q4_0)

    def norm(name):
        writer.add_tensor(name, np.ones(n_embd, dtype=np.float32))

    matrix("token_embd.weight", vocab, n_embd)
    for i in range(layers):
        norm(f"blk.{i}.attn_norm.weight")
        matrix(f"blk.{i}.attn_q.weight", heads * head_dim, n_embd)
        matrix(f"blk.{i}.attn_k.weight", kv_heads * head_dim, n_embd)
        matrix(f"blk.{i}.attn_v.weight", kv_heads * head_dim, n_embd)
        matrix(f"blk.{i}.attn_output.weight", n_embd, heads * head_dim)
        norm(f"blk.{i}.ffn_norm.weight")
        matrix(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        matrix(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        matrix(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    norm("output_norm.weight")
    matrix("output.weight", vocab, n_embd)
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
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    main()
