"""Tiny random-weight models of every architecture hearth's engines run, in every GGUF
quantization type they read: the conformance suite's models (tests/backend-check's
`conformance` module lists the same architectures and types).

No real Qwen2 or Qwen3 weights can be had here, and the real models cover one type
each, so each architecture gets a small model with seeded random weights, written in
F32 with gguf-py (llama.cpp's own GGUF package) and then quantized to each type by
llama.cpp's own quantizer (`hearth-llama-logits --quantize`), "pure": every matrix of
the one type, so each file tests that type.

Gemma 3n gets the same treatment (no Hugging Face `transformers` nor the converter's
`conversion` package is installed here, so gguf-py writes the file llama.cpp's converter
would: the same keys and tensor names, a per-layer sliding-window array, a per-layer
feed-forward width array), with the few sizes llama.cpp fixes for it (4 AltUp streams,
a LAuReL rank of 64, per-layer inputs of 256, KV shared from layer 20 on, activation
sparsity on the first 10 layers) and SmolLM2's tokenizer cut to its first 2048 tokens:
the per-layer embedding table has 256 values per layer per token.

usage: tiny_models.py OUT QUANTIZER SMOLLM2_GGUF GEMMA3_GGUF

Writes OUT/<arch>/<arch>-<TYPE>.gguf; does nothing when they all exist and OUT/.stamp
holds this script's hash (so changing the script regenerates them).
"""

import hashlib
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter

TYPES = ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]

# K-quants pack 256 values a block, so every matrix's row length is a multiple of 256.
N_EMBD, N_FF, HEADS, KV_HEADS, HEAD_DIM = 256, 512, 4, 2, 64
# Qwen3-MoE's experts: each expert's FFN is 256 wide, the smallest row the down
# projection can have in a K-quant; 2 of 8 run per token.
N_EXPERT, N_EXPERT_USED, N_FF_EXP = 8, 2, 256
# Top-k routing is discontinuous: where a token's second and third experts nearly tie,
# llama.cpp's rounding of activations (8 bits for K-quants) flips the choice and its
# logits jump far from exact arithmetic's. So the routing is made decisive: experts come
# in pairs that read one coordinate each (ROUTER_PAIR on it, small noise elsewhere), and
# every token's embedding carries EMBEDDING_PAIR on the coordinate of pair (id mod 4):
# each token's pair wins by a clear margin, and which pair it is varies by token.
ROUTER_STD, ROUTER_PAIR, EMBEDDING_PAIR = 0.02, 1.0, 4.0

# (architecture, layers, tokenizer source, RoPE base, embeddings' std). Gemma 3 needs
# six layers to reach its first global one (layer 5); a RoPE base other than the local
# layers' 10 000 shows the two are kept apart. Gemma multiplies its embeddings by
# √n_embd = 16 and ties its output to them: with the others' std the residual stream
# would be mostly the last token's own embedding, and the greedy token that token.
ARCHS = [
    ("llama", 3, "smollm2", 10_000.0, 0.1),
    ("qwen2", 3, "smollm2", 1_000_000.0, 0.1),
    ("qwen3", 3, "smollm2", 1_000_000.0, 0.1),
    ("gemma3", 6, "gemma3", 1_000_000.0, 0.03),
    ("qwen3moe", 3, "smollm2", 1_000_000.0, 0.1),
    ("gemma3n", 25, "smollm2", 1_000_000.0, 0.1),
]
# Small enough that a ~10-token prompt crosses it on gemma3's local layers.
SLIDING_WINDOW = 4
# Gemma 3n: llama.cpp fixes these (llama-hparams.h, models/gemma3n.cpp) whatever the file
# says, so the file says the same. 25 layers: layers 20-24 reuse the KV of 18 (local) and
# 19 (global), every fifth layer is global, the first 10 cut their gate activations at
# the 95th percentile (Φ⁻¹(0.95) standard deviations above the mean).
ALTUP_STREAMS, LAUREL_RANK, PER_LAYER_DIM, KV_LAYERS, SPARSE_LAYERS = 4, 64, 256, 20, 10
GEMMA3N_PERIOD, SPARSITY_STD, GEMMA3N_VOCAB = 5, 1.6448533535003662, 2048


def copy_tokenizer(reader, writer, vocab_limit=None):
    """Every `tokenizer.*` key of a real model, so llama.cpp and hearth tokenize alike;
    with `vocab_limit`, a byte-level BPE's first tokens only (its ids follow its merges,
    so the first n tokens with the merges among them are a whole smaller tokenizer)."""
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()[:vocab_limit]
    kept = set(tokens)
    for name, field in reader.fields.items():
        if not name.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub_type = field.types[1] if vtype == GGUFValueType.ARRAY else None
        value = field.contents()
        if vocab_limit and name in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type"):
            value = value[:vocab_limit]
        if vocab_limit and name == "tokenizer.ggml.merges":
            value = [m for m in value if all(p in kept for p in m.split(" ") + [m.replace(" ", "")])]
        writer.add_key_value(name, value, vtype, sub_type=sub_type)
    return len(tokens)


def write_gemma3n_globals(writer, rng, vocab, layers):
    """Gemma 3n's tensors outside the blocks: the per-layer token embeddings and the
    projection of the main embedding into them, and the stacked projections of the
    main stream into the other AltUp streams and back."""
    per_layer = PER_LAYER_DIM * layers
    others = ALTUP_STREAMS - 1
    writer.add_tensor(
        "per_layer_token_embd.weight",
        rng.normal(0.0, 0.03, (vocab, per_layer)).astype(np.float32),
    )
    writer.add_tensor(
        "per_layer_model_proj.weight",
        rng.normal(0.0, 0.06, (per_layer, N_EMBD)).astype(np.float32),
    )
    writer.add_tensor("per_layer_proj_norm.weight", rng.normal(1.0, 0.1, PER_LAYER_DIM).astype(np.float32))
    for name in ("altup_proj.weight", "altup_unembd_proj.weight"):
        writer.add_tensor(name, rng.normal(0.0, 0.06, (others, N_EMBD, N_EMBD)).astype(np.float32))


def gemma3n_block(matrix, norm, small_norm):
    """A Gemma 3n block's tensors beyond Gemma 3's: LAuReL's low-rank pair and norm,
    AltUp's router, its norm and its prediction and correction coefficients, and the
    per-layer input's gate, projection and norm."""
    streams = ALTUP_STREAMS
    return {
        "laurel_l.weight": matrix(LAUREL_RANK, N_EMBD),
        "laurel_r.weight": matrix(N_EMBD, LAUREL_RANK),
        "laurel_post_norm.weight": small_norm(N_EMBD),
        "altup_router.weight": matrix(streams, N_EMBD, 1.0),
        "altup_router_norm.weight": norm(N_EMBD),
        "altup_predict_coef.weight": matrix(streams * streams, streams, 0.05),
        "altup_correct_coef.weight": matrix(streams, streams, 0.05),
        "altup_correct_scale.weight": norm(N_EMBD),
        "inp_gate.weight": matrix(PER_LAYER_DIM, N_EMBD),
        "proj.weight": matrix(N_EMBD, PER_LAYER_DIM),
        "post_norm.weight": small_norm(N_EMBD),
    }


def write_base(path, arch, layers, tokenizer_gguf, rope_base, embedding_std, seed):
    rng = np.random.default_rng(seed)

    def matrix(outputs, inputs, std=0.06):
        return rng.normal(0.0, std, (outputs, inputs)).astype(np.float32)

    def experts(outputs, inputs):
        # numpy's [expert][row][column] is GGUF's ne = [inputs, outputs, experts].
        return rng.normal(0.0, 0.06, (N_EXPERT, outputs, inputs)).astype(np.float32)

    def norm(n):
        # llama.cpp multiplies by a GGUF norm weight as it is (Gemma's +1 included).
        return rng.normal(1.0, 0.1, n).astype(np.float32)

    def small_norm(n):
        # Gemma 3n's 25 layers each add their normed outputs to the AltUp streams: at
        # full scale a random model is chaotic, and llama.cpp's rounding of activations
        # (to 8 bits for quantized weights) grows through it far past its bound.
        return rng.normal(0.3, 0.03, n).astype(np.float32)

    writer = GGUFWriter(path, arch)
    writer.add_name(f"tiny random {arch}")
    writer.add_file_type(0)  # all F32
    writer.add_context_length(512)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(layers)
    # Gemma 3n's converter writes per-layer arrays where the others write one number.
    writer.add_feed_forward_length([N_FF] * layers if arch == "gemma3n" else N_FF)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_rope_freq_base(rope_base)
    writer.add_layer_norm_rms_eps(1e-6)
    if arch in ("gemma3", "gemma3n"):
        writer.add_sliding_window(SLIDING_WINDOW)
    if arch == "gemma3n":
        writer.add_rope_freq_base_swa(10_000.0)
        writer.add_sliding_window_pattern([i % GEMMA3N_PERIOD < GEMMA3N_PERIOD - 1 for i in range(layers)])
        writer.add_final_logit_softcapping(30.0)
        writer.add_altup_active_idx(0)
        writer.add_altup_num_inputs(ALTUP_STREAMS)
        writer.add_embedding_length_per_layer_input(PER_LAYER_DIM)
        writer.add_shared_kv_layers(layers - KV_LAYERS)
        sparsity = [SPARSITY_STD if i < SPARSE_LAYERS else float("-inf") for i in range(layers)]
        writer.add_activation_sparsity_scale(sparsity)
    if arch == "qwen3moe":
        writer.add_expert_count(N_EXPERT)
        writer.add_expert_used_count(N_EXPERT_USED)
        writer.add_expert_feed_forward_length(N_FF_EXP)
    vocab_limit = GEMMA3N_VOCAB if arch == "gemma3n" else None
    vocab = copy_tokenizer(GGUFReader(tokenizer_gguf), writer, vocab_limit)

    # Embeddings wide enough that the logits spread over a few units: a clear greedy
    # token, not a near-tie that rounding flips.
    embd = matrix(vocab, N_EMBD, embedding_std)
    if arch == "qwen3moe":
        embd[np.arange(vocab), np.arange(vocab) % (N_EXPERT // 2)] += EMBEDDING_PAIR
    writer.add_tensor("token_embd.weight", embd)
    writer.add_tensor("output_norm.weight", norm(N_EMBD))
    if arch == "gemma3n":
        write_gemma3n_globals(writer, rng, vocab, layers)
    if arch in ("llama", "gemma3n"):
        # A separate output matrix on two architectures; the others tie it to the
        # embeddings, as SmolLM2 and Gemma 3 do. Gemma 3n's small layer outputs (see
        # small_norm) leave its state mostly the last token's embedding, so with tied
        # embeddings every greedy token would repeat the one before.
        writer.add_tensor("output.weight", matrix(vocab, N_EMBD, 0.1))
    q_dim, kv_dim = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    for i in range(layers):
        blk = f"blk.{i}."
        tensors = {
            "attn_norm.weight": norm(N_EMBD),
            "attn_q.weight": matrix(q_dim, N_EMBD),
            "attn_k.weight": matrix(kv_dim, N_EMBD),
            "attn_v.weight": matrix(kv_dim, N_EMBD),
            "attn_output.weight": matrix(N_EMBD, q_dim),
            "ffn_norm.weight": norm(N_EMBD),
        }
        if arch == "qwen3moe":
            router = matrix(N_EXPERT, N_EMBD, ROUTER_STD)
            router[np.arange(N_EXPERT), np.arange(N_EXPERT) // 2] += ROUTER_PAIR
            tensors["ffn_gate_inp.weight"] = router
            tensors["ffn_gate_exps.weight"] = experts(N_FF_EXP, N_EMBD)
            tensors["ffn_up_exps.weight"] = experts(N_FF_EXP, N_EMBD)
            tensors["ffn_down_exps.weight"] = experts(N_EMBD, N_FF_EXP)
        else:
            tensors["ffn_gate.weight"] = matrix(N_FF, N_EMBD)
            tensors["ffn_up.weight"] = matrix(N_FF, N_EMBD)
            tensors["ffn_down.weight"] = matrix(N_EMBD, N_FF)
        if arch == "qwen2":
            for name, n in [("attn_q", q_dim), ("attn_k", kv_dim), ("attn_v", kv_dim)]:
                tensors[f"{name}.bias"] = rng.normal(0.0, 0.1, n).astype(np.float32)
        if arch in ("qwen3", "gemma3", "qwen3moe", "gemma3n"):
            tensors["attn_q_norm.weight"] = norm(HEAD_DIM)
            tensors["attn_k_norm.weight"] = norm(HEAD_DIM)
        if arch == "gemma3":
            tensors["post_attention_norm.weight"] = norm(N_EMBD)
            tensors["post_ffw_norm.weight"] = norm(N_EMBD)
        if arch == "gemma3n":
            tensors["post_attention_norm.weight"] = small_norm(N_EMBD)
            tensors["post_ffw_norm.weight"] = small_norm(N_EMBD)
            tensors.update(gemma3n_block(matrix, norm, small_norm))
        for name, values in tensors.items():
            writer.add_tensor(blk + name, values)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main():
    out, quantizer, smollm2, gemma3 = sys.argv[1:5]
    tokenizers = {"smollm2": smollm2, "gemma3": gemma3}
    with open(__file__, "rb") as script:
        stamp = hashlib.sha256(script.read()).hexdigest()
    stamp_path = os.path.join(out, ".stamp")
    wanted = [os.path.join(out, arch, f"{arch}-{ty}.gguf") for arch, *_ in ARCHS for ty in TYPES]
    if all(map(os.path.isfile, wanted)) and os.path.isfile(stamp_path):
        with open(stamp_path) as f:
            if f.read().strip() == stamp:
                print(f"    {len(wanted)} tiny models up to date")
                return
    if os.path.exists(stamp_path):
        os.remove(stamp_path)
    for seed, (arch, layers, tokenizer, rope_base, embedding_std) in enumerate(ARCHS):
        folder = os.path.join(out, arch)
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out) as scratch:
            base = os.path.join(scratch, f"{arch}-F32.gguf")
            write_base(base, arch, layers, tokenizers[tokenizer], rope_base, embedding_std, seed)
            for ty in TYPES:
                # Quantized into the scratch folder and renamed: a file in place is whole.
                partial = os.path.join(scratch, f"{arch}-{ty}.gguf")
                subprocess.run([quantizer, "--quantize", base, partial, ty], check=True)
                os.replace(partial, os.path.join(folder, f"{arch}-{ty}.gguf"))
        print(f"    {arch}: {layers} layers, {len(TYPES)} types")
    with open(stamp_path, "w") as f:
        f.write(stamp + "\n")


if __name__ == "__main__":
    main()
