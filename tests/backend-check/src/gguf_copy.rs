//! GGUF copies of a model, two kinds:
//!
//! - every 2-D weight expanded to F16 (1-D tensors, the norms, stay as they are): the
//!   same model, on which llama.cpp's CPU kernels round a matmul's activations to f16
//!   instead of to 8 bits per block of 32. It separates how faithfully a backend
//!   computes from how llama.cpp rounds: on the quantized file llama.cpp itself sits a
//!   few percent from exact arithmetic;
//! - the same weights with `<arch>.pooling_type` set: a generative model read as an
//!   embedding model (as a decoder embedding model's file is), so every backend's
//!   embeddings of one architecture can be compared.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use hearth_sdk::helpers::{dequantize, GgmlType, Gguf, Value};

const ALIGNMENT: usize = 32;
/// GGUF's `general.file_type` for "mostly F16".
const MOSTLY_F16: u32 = 1;

/// A 2-D weight not already F32: what the F16 copy expands.
fn weight_matrix(ty: GgmlType, dims: &[u64]) -> bool {
    dims.len() == 2 && ty != GgmlType::F32
}

/// Write `source` to `out` with its 2-D weights as F16.
pub fn write_f16_copy(source: &Gguf, out: &Path) -> std::io::Result<()> {
    write_copy(source, out, &[("general.file_type".into(), Value::U32(MOSTLY_F16))], true)
}

/// Write `source` to `out` with `<arch>.pooling_type` = `pooling` (llama.cpp's
/// numbering: 1 mean, 2 CLS, 3 last), its weights as they are.
pub fn write_pooled_copy(source: &Gguf, out: &Path, pooling: u32) -> std::io::Result<()> {
    let arch = source.str("general.architecture").expect("a GGUF model names its architecture");
    write_copy(source, out, &[(format!("{arch}.pooling_type"), Value::U32(pooling))], false)
}

/// Write `source` to `out` with the metadata of `set` (replaced or added), and with its
/// 2-D weights as F16 when `to_f16`, through a partial file of this process's own,
/// renamed once complete (so test binaries never read half a copy).
fn write_copy(
    source: &Gguf,
    out: &Path,
    set: &[(String, Value)],
    to_f16: bool,
) -> std::io::Result<()> {
    let mut metadata: Vec<(&String, &Value)> = source
        .metadata()
        .iter()
        .filter(|(key, _)| !set.iter().any(|(name, _)| name == *key))
        .chain(set.iter().map(|(key, value)| (key, value)))
        .collect();
    metadata.sort_by_key(|(key, _)| key.as_str());
    let converted = |ty, dims: &[u64]| to_f16 && weight_matrix(ty, dims);
    let mut header = b"GGUF".to_vec();
    header.extend(3u32.to_le_bytes());
    header.extend((source.tensors().len() as u64).to_le_bytes());
    header.extend((metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_string(&mut header, key);
        header.extend(type_id(value).to_le_bytes());
        put_value(&mut header, value);
    }
    let mut offset = 0usize;
    let mut starts = Vec::new();
    for tensor in source.tensors() {
        let (ty, size) = if converted(tensor.ty, &tensor.dims) {
            (GgmlType::F16, tensor.elements() as usize * 2)
        } else {
            (tensor.ty, tensor.size as usize)
        };
        put_string(&mut header, &tensor.name);
        header.extend((tensor.dims.len() as u32).to_le_bytes());
        tensor.dims.iter().for_each(|dim| header.extend(dim.to_le_bytes()));
        header.extend(ggml_id(ty).to_le_bytes());
        header.extend((offset as u64).to_le_bytes());
        starts.push(offset);
        offset = (offset + size).next_multiple_of(ALIGNMENT);
    }
    header.resize(header.len().next_multiple_of(ALIGNMENT), 0);

    let partial = out.with_extension(format!("{}.partial", std::process::id()));
    let mut file = BufWriter::new(File::create(&partial)?);
    file.write_all(&header)?;
    let mut at = 0usize;
    for (tensor, start) in source.tensors().iter().zip(starts) {
        file.write_all(&vec![0u8; start - at])?;
        let bytes = source.tensor_data(tensor);
        if converted(tensor.ty, &tensor.dims) {
            let mut values = vec![0.0f32; tensor.elements() as usize];
            dequantize(tensor.ty, bytes, &mut values).expect("a type the SDK dequantizes");
            let halves: Vec<u8> =
                values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
            file.write_all(&halves)?;
            at = start + halves.len();
        } else {
            file.write_all(bytes)?;
            at = start + bytes.len();
        }
    }
    file.flush()?;
    drop(file);
    std::fs::rename(partial, out)
}

fn put_string(out: &mut Vec<u8>, text: &str) {
    out.extend((text.len() as u64).to_le_bytes());
    out.extend(text.as_bytes());
}

/// GGUF's metadata value type numbers.
fn type_id(value: &Value) -> u32 {
    match value {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.extend(v.to_le_bytes()),
        Value::U16(v) => out.extend(v.to_le_bytes()),
        Value::I16(v) => out.extend(v.to_le_bytes()),
        Value::U32(v) => out.extend(v.to_le_bytes()),
        Value::I32(v) => out.extend(v.to_le_bytes()),
        Value::F32(v) => out.extend(v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(text) => put_string(out, text),
        Value::Array(items) => {
            // An array has one element type; the models these tests copy have no empty ones.
            let first = items.first().expect("a non-empty metadata array");
            out.extend(type_id(first).to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            items.iter().for_each(|item| put_value(out, item));
        }
        Value::U64(v) => out.extend(v.to_le_bytes()),
        Value::I64(v) => out.extend(v.to_le_bytes()),
        Value::F64(v) => out.extend(v.to_le_bytes()),
    }
}

/// ggml's type number of `ty`, as the SDK reads it.
fn ggml_id(ty: GgmlType) -> u32 {
    (0..64).find(|&id| GgmlType::from_id(id) == Some(ty)).expect("a type the SDK reads")
}
