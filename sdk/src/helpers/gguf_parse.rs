//! The checks behind [`super::gguf::Gguf::open`]: a bounds-checked cursor over the
//! file image and the structural rules, applied in file order so the error names the
//! first rule the file breaks.

use std::collections::HashMap;
use std::path::Path;

use super::ggml::GgmlType;
use super::gguf::{
    GgufError, TensorInfo, Value, DEFAULT_ALIGNMENT, MAX_ARRAY_LEN, MAX_DIMS, MAX_STRING_BYTES,
};

const MAGIC: &[u8; 4] = b"GGUF";
/// Smallest possible encodings, for checking counts against the file size before
/// trusting them: a key-value pair is an empty key, a type and a one-byte value; a
/// tensor info is an empty name, a dimension count, a type and an offset.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

pub(super) struct Parsed {
    pub version: u32,
    pub alignment: u64,
    pub data_offset: u64,
    pub metadata: HashMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
}

struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn take(&mut self, count: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        let end = (self.at as u64).checked_add(count).filter(|&end| end <= self.len());
        let Some(end) = end else {
            return Err(GgufError::Truncated {
                path: self.path.into(),
                what: what(),
                offset: self.at as u64,
                len: self.len(),
            });
        };
        let slice = &self.bytes[self.at..end as usize];
        self.at = end as usize;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        Ok(self.take(N as u64, what)?.try_into().expect("take returned N bytes"))
    }
    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        if len > MAX_STRING_BYTES {
            return Err(GgufError::TooLong {
                path: self.path.into(),
                what: what(),
                len,
                cap: MAX_STRING_BYTES,
            });
        }
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| GgufError::Utf8 { path: self.path.into(), what: what() })
    }

    fn value(&mut self, key: &str, value_type: u32, depth: u32) -> Result<Value, GgufError> {
        let what = || format!("value of `{key}`");
        Ok(match value_type {
            0 => Value::U8(self.array::<1>(&what)?[0]),
            1 => Value::I8(self.array::<1>(&what)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            4 => Value::U32(self.u32(&what)?),
            5 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            7 => Value::Bool(self.array::<1>(&what)?[0] != 0),
            8 => Value::String(self.string(&what)?),
            // Arrays of arrays exist in the spec but nowhere in practice; one level of
            // nesting is allowed so a crafted file cannot recurse deeply.
            9 if depth == 0 => {
                let element_type = self.u32(&what)?;
                let count = self.u64(&what)?;
                if count > MAX_ARRAY_LEN {
                    let what = format!("array `{key}`");
                    return Err(GgufError::TooLong {
                        path: self.path.into(),
                        what,
                        len: count,
                        cap: MAX_ARRAY_LEN,
                    });
                }
                let remaining = self.len() - self.at as u64;
                if count > remaining {
                    let what = "array element";
                    return Err(GgufError::Count {
                        path: self.path.into(),
                        what,
                        count,
                        len: self.len(),
                    });
                }
                let mut values = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    values.push(self.value(key, element_type, depth + 1)?);
                }
                Value::Array(values)
            }
            10 => Value::U64(self.u64(&what)?),
            11 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            _ => {
                return Err(GgufError::ValueType {
                    path: self.path.into(),
                    key: key.into(),
                    value_type,
                })
            }
        })
    }
}

pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<Parsed, GgufError> {
    let mut cursor = Cursor { path, bytes, at: 0 };
    let header = || "header".to_string();
    let magic: [u8; 4] = cursor.array(&header)?;
    if &magic != MAGIC {
        return Err(GgufError::Magic { path: path.into(), found: magic });
    }
    let version = cursor.u32(&header)?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::Version { path: path.into(), version });
    }
    let tensor_count = cursor.u64(&header)?;
    let kv_count = cursor.u64(&header)?;
    let len = cursor.len();
    if tensor_count.saturating_mul(MIN_TENSOR_INFO_BYTES) > len {
        return Err(GgufError::Count {
            path: path.into(),
            what: "tensor",
            count: tensor_count,
            len,
        });
    }
    if kv_count.saturating_mul(MIN_KV_BYTES) > len {
        return Err(GgufError::Count { path: path.into(), what: "metadata", count: kv_count, len });
    }

    let mut metadata = HashMap::with_capacity(kv_count as usize);
    for index in 0..kv_count {
        let key = cursor.string(&|| format!("metadata key #{index}"))?;
        let value_type = cursor.u32(&|| format!("type of `{key}`"))?;
        let value = cursor.value(&key, value_type, 0)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(GgufError::DuplicateKey { path: path.into(), key });
        }
    }
    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(value) => {
            let alignment = value.as_u64().unwrap_or(0);
            if alignment == 0 || !alignment.is_power_of_two() {
                return Err(GgufError::Alignment { path: path.into(), alignment });
            }
            alignment
        }
    };

    let mut raw = Vec::with_capacity(tensor_count as usize);
    for index in 0..tensor_count {
        let name = cursor.string(&|| format!("tensor name #{index}"))?;
        let dims_count = cursor.u32(&|| format!("tensor `{name}`"))?;
        if dims_count == 0 || dims_count > MAX_DIMS {
            return Err(GgufError::Dims { path: path.into(), name, dims: dims_count });
        }
        let mut dims = Vec::with_capacity(dims_count as usize);
        for _ in 0..dims_count {
            dims.push(cursor.u64(&|| format!("tensor `{name}`"))?);
        }
        let type_id = cursor.u32(&|| format!("tensor `{name}`"))?;
        let offset = cursor.u64(&|| format!("tensor `{name}`"))?;
        raw.push((name, dims, type_id, offset));
    }
    let data_offset = (cursor.at as u64).next_multiple_of(alignment);

    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(raw.len());
    let mut names = HashMap::with_capacity(raw.len());
    for (name, dims, type_id, offset) in raw {
        if dims.contains(&0) {
            return Err(GgufError::ZeroDim { path: path.into(), name });
        }
        let Some(ty) = GgmlType::from_id(type_id) else {
            return Err(GgufError::TensorType { path: path.into(), name, type_id });
        };
        let elements = dims.iter().try_fold(1u64, |product, &dim| product.checked_mul(dim));
        let (block, block_bytes) = ty.block();
        if dims[0] % block != 0 {
            return Err(GgufError::BlockSize { path: path.into(), name, row: dims[0], ty, block });
        }
        let size = elements.and_then(|elements| (elements / block).checked_mul(block_bytes));
        let Some(size) = size else {
            return Err(GgufError::Overflow { path: path.into(), name });
        };
        if offset % alignment != 0 {
            return Err(GgufError::Misaligned { path: path.into(), name, offset, alignment });
        }
        let start = data_offset.checked_add(offset);
        let end = start.and_then(|start| start.checked_add(size));
        match (start, end) {
            (Some(start), Some(end)) if end <= len => {
                if names.insert(name.clone(), ()).is_some() {
                    return Err(GgufError::DuplicateTensor { path: path.into(), name });
                }
                tensors.push(TensorInfo { name, dims, ty, offset: start, size });
            }
            _ => {
                let start = start.unwrap_or(u64::MAX);
                let end = end.unwrap_or(u64::MAX);
                return Err(GgufError::OutOfBounds { path: path.into(), name, start, end, len });
            }
        }
    }
    Ok(Parsed { version, alignment, data_offset, metadata, tensors })
}
