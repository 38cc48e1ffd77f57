//! A validating GGUF reader (versions 2 and 3).
//!
//! The whole structure — header, metadata, tensor infos, data layout — is checked when
//! the file is opened, before anyone looks at a tensor: a corrupt or hostile file fails
//! here with an error naming the file and the first rule it breaks, instead of making a
//! backend read out of bounds or allocate without limit. Tensor data stays in a memory
//! map and is handed out as slices of it.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::ggml::GgmlType;

/// Longest string accepted anywhere in the file (keys, names, values): chat templates are
/// the longest real ones, at tens of kilobytes.
pub const MAX_STRING_BYTES: u64 = 1 << 20;
/// Most elements accepted in one metadata array: vocabularies reach a few hundred thousand.
pub const MAX_ARRAY_LEN: u64 = 1 << 24;
/// Most dimensions a ggml tensor has.
pub const MAX_DIMS: u32 = 4;
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Why a GGUF file was refused. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a GGUF file (magic {found:02x?}, expected \"GGUF\")")]
    Magic { path: PathBuf, found: [u8; 4] },
    #[error("{path}: GGUF version {version} is not supported (2 and 3 are)")]
    Version { path: PathBuf, version: u32 },
    #[error(
        "{path}: truncated: {what} at offset {offset} runs past the end of the file ({len} bytes)"
    )]
    Truncated { path: PathBuf, what: String, offset: u64, len: u64 },
    #[error("{path}: {what} count {count} cannot fit in a file of {len} bytes")]
    Count { path: PathBuf, what: &'static str, count: u64, len: u64 },
    #[error("{path}: {what} is {len} long, over the cap of {cap}")]
    TooLong { path: PathBuf, what: String, len: u64, cap: u64 },
    #[error("{path}: {what} is not valid UTF-8")]
    Utf8 { path: PathBuf, what: String },
    #[error("{path}: metadata `{key}` has unknown value type {value_type}")]
    ValueType { path: PathBuf, key: String, value_type: u32 },
    #[error("{path}: metadata key `{key}` appears twice")]
    DuplicateKey { path: PathBuf, key: String },
    #[error("{path}: tensor `{name}` has {dims} dimensions (1 to 4 allowed)")]
    Dims { path: PathBuf, name: String, dims: u32 },
    #[error("{path}: tensor `{name}` has a zero-sized dimension")]
    ZeroDim { path: PathBuf, name: String },
    #[error("{path}: tensor `{name}` has unknown type id {type_id}")]
    TensorType { path: PathBuf, name: String, type_id: u32 },
    #[error("{path}: tensor `{name}` element count or byte size overflows 64 bits")]
    Overflow { path: PathBuf, name: String },
    #[error("{path}: tensor `{name}` row of {row} elements is not a multiple of {ty}'s block of {block}")]
    BlockSize { path: PathBuf, name: String, row: u64, ty: GgmlType, block: u64 },
    #[error("{path}: general.alignment {alignment} is not a non-zero power of two")]
    Alignment { path: PathBuf, alignment: u64 },
    #[error(
        "{path}: tensor `{name}` offset {offset} is not a multiple of the alignment {alignment}"
    )]
    Misaligned { path: PathBuf, name: String, offset: u64, alignment: u64 },
    #[error("{path}: tensor `{name}` data [{start}, {end}) lies outside the file ({len} bytes)")]
    OutOfBounds { path: PathBuf, name: String, start: u64, end: u64, len: u64 },
    #[error("{path}: tensor `{name}` appears twice")]
    DuplicateTensor { path: PathBuf, name: String },
    #[error("{path}: metadata `{key}`: {problem}")]
    Metadata { path: PathBuf, key: String, problem: String },
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// The value as an unsigned integer, when it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, when it is any number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }
}

/// One tensor's description; `offset` is absolute in the file and already checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the row length (the fastest-varying dimension).
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    pub offset: u64,
    pub size: u64,
}

impl TensorInfo {
    /// Total element count (checked not to overflow at open).
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Rows: every dimension after the first, multiplied.
    pub fn rows(&self) -> u64 {
        self.dims[1..].iter().product()
    }
}

enum Backing {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

/// An opened, validated GGUF file.
pub struct Gguf {
    path: PathBuf,
    backing: Backing,
    pub version: u32,
    pub alignment: u64,
    /// Offset of the tensor data section.
    pub data_offset: u64,
    metadata: HashMap<String, Value>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
}

impl fmt::Debug for Gguf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gguf")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl Gguf {
    /// Map `path` and validate it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io { path: path.clone(), source };
        let file = std::fs::File::open(&path).map_err(io)?;
        // SAFETY: the map is read-only; a file truncated by another process while mapped
        // would fault, the same trade-off every GGUF runtime makes to avoid copying weights.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::parse(path, Backing::Mapped(map))
    }

    /// Validate a GGUF image held in memory; `label` stands for the file name in errors.
    pub fn from_bytes(label: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self, GgufError> {
        Self::parse(label.into(), Backing::Owned(bytes))
    }

    fn parse(path: PathBuf, backing: Backing) -> Result<Self, GgufError> {
        let parsed = super::gguf_parse::parse(&path, bytes_of(&backing))?;
        let by_name =
            parsed.tensors.iter().enumerate().map(|(index, t)| (t.name.clone(), index)).collect();
        Ok(Self {
            path,
            backing,
            version: parsed.version,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
            by_name,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The whole file's size in bytes.
    pub fn file_size(&self) -> u64 {
        bytes_of(&self.backing).len() as u64
    }
    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.metadata
    }
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&index| &self.tensors[index])
    }

    /// A tensor's bytes. Bounds were checked at open; `get` keeps it safe regardless.
    pub fn tensor_data(&self, tensor: &TensorInfo) -> &[u8] {
        let bytes = bytes_of(&self.backing);
        bytes.get(tensor.offset as usize..(tensor.offset + tensor.size) as usize).unwrap_or(&[])
    }

    fn problem(&self, key: &str, problem: impl Into<String>) -> GgufError {
        GgufError::Metadata {
            path: self.path.clone(),
            key: key.to_string(),
            problem: problem.into(),
        }
    }

    /// A required string value.
    pub fn str(&self, key: &str) -> Result<&str, GgufError> {
        match self.get(key) {
            Some(Value::String(text)) => Ok(text),
            Some(_) => Err(self.problem(key, "is not a string")),
            None => Err(self.problem(key, "is missing")),
        }
    }

    /// A required non-negative integer value of any width.
    pub fn u64(&self, key: &str) -> Result<u64, GgufError> {
        match self.get(key) {
            Some(value) => {
                value.as_u64().ok_or_else(|| self.problem(key, "is not a non-negative integer"))
            }
            None => Err(self.problem(key, "is missing")),
        }
    }

    /// A required number of any type, as `f64`.
    pub fn f64(&self, key: &str) -> Result<f64, GgufError> {
        match self.get(key) {
            Some(value) => value.as_f64().ok_or_else(|| self.problem(key, "is not a number")),
            None => Err(self.problem(key, "is missing")),
        }
    }

    /// A required array value.
    pub fn array(&self, key: &str) -> Result<&[Value], GgufError> {
        match self.get(key) {
            Some(Value::Array(values)) => Ok(values),
            Some(_) => Err(self.problem(key, "is not an array")),
            None => Err(self.problem(key, "is missing")),
        }
    }

    /// A required array of strings.
    pub fn strings(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        self.array(key)?
            .iter()
            .map(|value| match value {
                Value::String(text) => Ok(text.as_str()),
                _ => Err(self.problem(key, "holds a value that is not a string")),
            })
            .collect()
    }
}

fn bytes_of(backing: &Backing) -> &[u8] {
    match backing {
        Backing::Mapped(map) => map,
        Backing::Owned(bytes) => bytes,
    }
}
