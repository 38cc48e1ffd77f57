//! The malformed-file corpus: corrupt model and adapter files derived from the real
//! SmolLM2 GGUF and from a real LoRA adapter written here, one per way a crafted or
//! damaged file has broken a GGUF reader before (truncations, lying counts, huge
//! strings, offsets past the end, overflowing dimensions, bad alignment, duplicates),
//! plus files whose structure is sound but whose content a backend must still refuse
//! (no tensors, an unknown architecture, a LoRA whose shapes do not fit the base).
//!
//! Each case patches a copy of the original bytes at a field located by walking the
//! file's layout, so a case breaks exactly the rule it names.

use std::path::Path;

/// Where each field of a GGUF file sits, found by walking it.
pub struct Layout {
    pub kvs: Vec<KvAt>,
    pub tensors: Vec<TensorAt>,
    /// Where the tensor data section starts (after alignment padding).
    pub data_offset: usize,
    /// Where the last tensor's data ends (padding may follow it).
    pub data_end: usize,
}

/// One metadata pair: where its key length, value type and value start.
pub struct KvAt {
    pub key: String,
    pub key_at: usize,
    pub type_at: usize,
    pub value_at: usize,
}

/// One tensor info: where its name length, dimension count, dimensions, type and offset are.
pub struct TensorAt {
    pub name: String,
    pub name_at: usize,
    pub n_dims_at: usize,
    pub dims: Vec<u64>,
    pub type_at: usize,
    pub offset_at: usize,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}
fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}
fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// Bytes of one value of `value_type` at `at` (a well-formed file is assumed).
fn value_len(bytes: &[u8], value_type: u32, at: usize) -> usize {
    match value_type {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        8 => 8 + u64_at(bytes, at) as usize,
        9 => {
            let element_type = u32_at(bytes, at);
            let count = u64_at(bytes, at + 4) as usize;
            let mut end = at + 12;
            for _ in 0..count {
                end += value_len(bytes, element_type, end);
            }
            end - at
        }
        other => panic!("the original file has value type {other}"),
    }
}

impl Layout {
    /// Walk a well-formed GGUF v3 image.
    pub fn of(bytes: &[u8]) -> Self {
        let (tensor_count, kv_count) = (u64_at(bytes, 8), u64_at(bytes, 16));
        let mut at = 24;
        let string = |at: usize| {
            String::from_utf8(bytes[at + 8..at + 8 + u64_at(bytes, at) as usize].to_vec()).unwrap()
        };
        let mut kvs = Vec::new();
        let mut alignment = 32;
        for _ in 0..kv_count {
            let key = string(at);
            let type_at = at + 8 + key.len();
            let value_type = u32_at(bytes, type_at);
            if key == "general.alignment" {
                alignment = u32_at(bytes, type_at + 4) as usize;
            }
            kvs.push(KvAt { key, key_at: at, type_at, value_at: type_at + 4 });
            at = type_at + 4 + value_len(bytes, value_type, type_at + 4);
        }
        let mut tensors = Vec::new();
        for _ in 0..tensor_count {
            let name = string(at);
            let n_dims_at = at + 8 + name.len();
            let n_dims = u32_at(bytes, n_dims_at) as usize;
            let dims = (0..n_dims).map(|index| u64_at(bytes, n_dims_at + 4 + 8 * index)).collect();
            let type_at = n_dims_at + 4 + 8 * n_dims;
            tensors.push(TensorAt {
                name,
                name_at: at,
                n_dims_at,
                dims,
                type_at,
                offset_at: type_at + 4,
            });
            at = type_at + 12;
        }
        // The SDK's reader knows every ggml type's size; the original file is sound.
        let gguf = hearth_sdk::helpers::Gguf::from_bytes("original", bytes.to_vec())
            .expect("the original is valid");
        let data_end =
            gguf.tensors().iter().map(|tensor| tensor.offset + tensor.size).max().unwrap_or(0)
                as usize;
        Self { kvs, tensors, data_offset: at.next_multiple_of(alignment), data_end }
    }

    pub fn kv(&self, key: &str) -> &KvAt {
        self.kvs.iter().find(|kv| kv.key == key).unwrap_or_else(|| panic!("no `{key}` in the file"))
    }
}

/// One corrupt file: a name saying what is wrong, and its bytes.
pub struct Case {
    pub name: String,
    pub bytes: Vec<u8>,
    /// Whether the structure is sound, so only the backend can refuse it (the gate passes it).
    pub structurally_valid: bool,
}

/// Patches of a copy of `original`, described by name.
struct Cases<'a> {
    original: &'a [u8],
    prefix: &'static str,
    cases: Vec<Case>,
}

impl Cases<'_> {
    fn add(&mut self, name: &str, patch: impl FnOnce(&mut Vec<u8>)) {
        let mut bytes = self.original.to_vec();
        patch(&mut bytes);
        self.cases.push(Case {
            name: format!("{}-{name}", self.prefix),
            bytes,
            structurally_valid: false,
        });
    }

    fn add_sound(&mut self, name: &str, patch: impl FnOnce(&mut Vec<u8>)) {
        self.add(name, patch);
        self.cases.last_mut().expect("just added").structurally_valid = true;
    }
}

/// Corruptions every GGUF file gets, model or adapter.
fn structural(cases: &mut Cases<'_>, layout: &Layout) {
    let len = cases.original.len();
    let first_tensor =
        layout.tensors.iter().find(|tensor| tensor.dims.len() == 2).expect("a matrix");
    let (first_kv, middle_kv) = (&layout.kvs[0], &layout.kvs[layout.kvs.len() / 2]);
    cases.add("empty", std::vec::Vec::clear);
    cases.add("bad-magic", |bytes| bytes[3] = b'X');
    cases.add("version-1", |bytes| put_u32(bytes, 4, 1));
    cases.add("version-99", |bytes| put_u32(bytes, 4, 99));
    cases.add("cut-in-header", |bytes| bytes.truncate(20));
    cases.add("cut-in-metadata", |bytes| bytes.truncate(middle_kv.value_at + 1));
    cases.add("cut-in-tensor-infos", |bytes| bytes.truncate(first_tensor.type_at));
    cases.add("cut-at-data", |bytes| bytes.truncate(layout.data_offset));
    cases.add("cut-inside-last-tensor", |bytes| bytes.truncate(layout.data_end - 1));
    cases.add("cut-in-half", |bytes| bytes.truncate(len / 2));
    cases.add("tensor-count-max", |bytes| put_u64(bytes, 8, u64::MAX));
    cases.add("tensor-count-plus-one", |bytes| put_u64(bytes, 8, layout.tensors.len() as u64 + 1));
    cases.add("kv-count-max", |bytes| put_u64(bytes, 16, u64::MAX));
    cases.add("kv-count-plus-one", |bytes| put_u64(bytes, 16, layout.kvs.len() as u64 + 1));
    cases.add("key-length-max", |bytes| put_u64(bytes, first_kv.key_at, u64::MAX));
    cases.add("key-length-over-cap", |bytes| put_u64(bytes, first_kv.key_at, 1 << 21));
    cases.add("key-not-utf8", |bytes| bytes[first_kv.key_at + 8] = 0xff);
    cases.add("value-type-unknown", |bytes| put_u32(bytes, first_kv.type_at, 99));
    cases.add("tensor-dims-zero-count", |bytes| put_u32(bytes, first_tensor.n_dims_at, 0));
    cases.add("tensor-dims-five", |bytes| put_u32(bytes, first_tensor.n_dims_at, 5));
    cases.add("tensor-dim-zero", |bytes| put_u64(bytes, first_tensor.n_dims_at + 4, 0));
    cases.add("tensor-dims-overflow", |bytes| {
        put_u64(bytes, first_tensor.n_dims_at + 4, 1 << 40);
        put_u64(bytes, first_tensor.n_dims_at + 12, 1 << 40);
    });
    cases.add("tensor-dims-past-end", |bytes| {
        put_u64(bytes, first_tensor.n_dims_at + 12, first_tensor.dims[1] * 4096);
    });
    cases.add("tensor-type-unknown", |bytes| put_u32(bytes, first_tensor.type_at, 99));
    cases.add("tensor-offset-misaligned", |bytes| {
        let offset = u64_at(bytes, first_tensor.offset_at);
        put_u64(bytes, first_tensor.offset_at, offset + 1);
    });
    cases.add("tensor-offset-past-end", |bytes| {
        put_u64(bytes, first_tensor.offset_at, (len as u64).next_multiple_of(32));
    });
    cases.add("tensor-offset-wraps", |bytes| put_u64(bytes, first_tensor.offset_at, u64::MAX - 31));
    cases.add("tensor-name-length-max", |bytes| put_u64(bytes, first_tensor.name_at, u64::MAX));
    cases.add_sound("no-tensors", |bytes| put_u64(bytes, 8, 0));
}

/// Rename the second of two same-length names to the first, in place.
fn duplicate_name(bytes: &mut [u8], names: &[(&str, usize)]) -> bool {
    for (index, (first, _)) in names.iter().enumerate() {
        if let Some((_, at)) = names[index + 1..]
            .iter()
            .find(|(other, _)| other.len() == first.len() && other != first)
        {
            bytes[at + 8..at + 8 + first.len()].copy_from_slice(first.as_bytes());
            return true;
        }
    }
    false
}

/// The corpus derived from the SmolLM2 model file.
pub fn model_cases(original: &[u8]) -> Vec<Case> {
    let layout = Layout::of(original);
    let mut cases = Cases { original, prefix: "model", cases: Vec::new() };
    structural(&mut cases, &layout);
    let tokens = layout.kv("tokenizer.ggml.tokens");
    let architecture = layout.kv("general.architecture");
    // The largest Q4_1 tensor: as F32 it is certain to run past the end of the file.
    let quantized = layout
        .tensors
        .iter()
        .filter(|tensor| u32_at(original, tensor.type_at) == 3)
        .max_by_key(|tensor| tensor.dims.iter().product::<u64>())
        .expect("a Q4_1 tensor");
    cases.add("string-value-huge", |bytes| {
        put_u64(bytes, architecture.value_at, original.len() as u64);
    });
    cases.add("array-count-max", |bytes| put_u64(bytes, tokens.value_at + 4, u64::MAX));
    cases.add("array-count-over-cap", |bytes| put_u64(bytes, tokens.value_at + 4, 1 << 25));
    cases.add("array-element-string-max", |bytes| put_u64(bytes, tokens.value_at + 12, u64::MAX));
    cases.add("array-element-type-unknown", |bytes| put_u32(bytes, tokens.value_at, 99));
    cases.add("array-of-arrays", |bytes| put_u32(bytes, tokens.value_at, 9));
    cases.add("q4-row-not-whole-blocks", |bytes| {
        put_u64(bytes, quantized.n_dims_at + 4, quantized.dims[0] - 1);
    });
    cases.add("q4-retyped-f32", |bytes| put_u32(bytes, quantized.type_at, 0));
    // `llama.block_count` has the same length as `general.alignment`: renaming it
    // declares an alignment without moving a byte.
    let block_count = layout.kv("llama.block_count");
    let declare_alignment = |alignment: u32| {
        move |bytes: &mut Vec<u8>| {
            bytes[block_count.key_at + 8..block_count.key_at + 8 + 17]
                .copy_from_slice(b"general.alignment");
            put_u32(bytes, block_count.value_at, alignment);
        }
    };
    cases.add("alignment-30", declare_alignment(30));
    cases.add("alignment-0", declare_alignment(0));
    // A legal alignment: whether the tensors still line up depends on the file, and
    // the block count the key replaced is gone, so the backend must refuse it.
    cases.add_sound("alignment-64", declare_alignment(64));
    let keys: Vec<(&str, usize)> =
        layout.kvs.iter().map(|kv| (kv.key.as_str(), kv.key_at)).collect();
    cases.add("duplicate-key", |bytes| assert!(duplicate_name(bytes, &keys)));
    let names: Vec<(&str, usize)> =
        layout.tensors.iter().map(|tensor| (tensor.name.as_str(), tensor.name_at)).collect();
    cases.add("duplicate-tensor", |bytes| assert!(duplicate_name(bytes, &names)));
    cases.add_sound("unknown-architecture", |bytes| {
        let at = architecture.value_at + 8;
        bytes[at..at + 5].copy_from_slice(b"llamb");
    });
    cases.cases
}

/// SmolLM2-135M's width and depth, which an adapter's shapes must match.
const EMBEDDING: u64 = 576;
const LAYERS: u64 = 30;
const RANK: u64 = 4;

/// A LoRA adapter for SmolLM2's query projections, as llama.cpp reads one (GGUF v3,
/// f32 tensors): `width` is the embedding it claims; anything but 576 cannot fit.
pub fn lora_adapter(width: u64) -> Vec<u8> {
    let put_string = |out: &mut Vec<u8>, text: &str| {
        out.extend_from_slice(&(text.len() as u64).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    };
    let tensors: Vec<(String, [u64; 2])> = (0..LAYERS)
        .flat_map(|layer| {
            let base = format!("blk.{layer}.attn_q.weight");
            [(format!("{base}.lora_a"), [width, RANK]), (format!("{base}.lora_b"), [RANK, width])]
        })
        .collect();
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&4u64.to_le_bytes());
    for (key, value) in
        [("general.type", "adapter"), ("general.architecture", "llama"), ("adapter.type", "lora")]
    {
        put_string(&mut out, key);
        out.extend_from_slice(&8u32.to_le_bytes());
        put_string(&mut out, value);
    }
    put_string(&mut out, "adapter.lora.alpha");
    out.extend_from_slice(&6u32.to_le_bytes());
    out.extend_from_slice(&(RANK as f32).to_le_bytes());
    let tensor_bytes = (width * RANK * 4).next_multiple_of(32);
    for (index, (name, shape)) in tensors.iter().enumerate() {
        put_string(&mut out, name);
        out.extend_from_slice(&2u32.to_le_bytes());
        shape.iter().for_each(|dim| out.extend_from_slice(&dim.to_le_bytes()));
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(index as u64 * tensor_bytes).to_le_bytes());
    }
    out.resize(out.len().next_multiple_of(32), 0);
    // Small deterministic values: the adapter must load and apply, not be useful.
    for index in 0..tensors.len() as u64 * tensor_bytes / 4 {
        out.extend_from_slice(&(((index % 17) as f32 - 8.0) / 1024.0).to_le_bytes());
    }
    out
}

/// The corpus derived from a real adapter, plus the adapter whose shapes do not fit.
pub fn adapter_cases() -> Vec<Case> {
    let original = lora_adapter(EMBEDDING);
    let layout = Layout::of(&original);
    let mut cases = Cases { original: &original, prefix: "adapter", cases: Vec::new() };
    structural(&mut cases, &layout);
    let mut cases = cases.cases;
    cases.push(Case {
        name: "adapter-shapes-do-not-fit".into(),
        bytes: lora_adapter(512),
        structurally_valid: true,
    });
    cases
}

/// The real SmolLM2 model file's bytes.
pub fn smollm2_bytes(models: &Path) -> Vec<u8> {
    std::fs::read(models.join("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"))
        .expect("read the SmolLM2 GGUF")
}
