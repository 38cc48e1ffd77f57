//! A validating safetensors header reader.
//!
//! A safetensors file is an 8-byte little-endian header length, a JSON header naming
//! every tensor's dtype, shape and byte range, then the data. Only the header is read
//! here (never the data), and every rule a loader relies on is checked before anyone
//! trusts it: the header length against a cap and the file size, the JSON itself, no
//! name twice, known dtypes, shapes whose byte size neither overflows nor disagrees with
//! the byte range, ranges inside the data section, and no two tensors sharing bytes. A
//! file that breaks a rule fails with an error naming the file and the first rule.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Largest JSON header accepted. The reference implementation's cap: real headers of
/// models with thousands of tensors stay far below it.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Most dimensions accepted in one tensor's shape.
pub const MAX_RANK: usize = 8;
/// The header key that holds free-form string metadata rather than a tensor.
const METADATA_KEY: &str = "__metadata__";

/// Why a safetensors file was refused. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: truncated: the file is {len} bytes, too short for the 8-byte header length")]
    NoHeaderLength { path: PathBuf, len: u64 },
    #[error("{path}: header length {header} is over the cap of {MAX_HEADER_BYTES} bytes")]
    HeaderTooLong { path: PathBuf, header: u64 },
    #[error("{path}: header length {header} runs past the end of the file ({len} bytes)")]
    HeaderPastEnd { path: PathBuf, header: u64, len: u64 },
    #[error("{path}: header is not a JSON object of tensors: {problem}")]
    Json { path: PathBuf, problem: String },
    #[error("{path}: `{name}` appears twice in the header")]
    Duplicate { path: PathBuf, name: String },
    #[error("{path}: `__metadata__` must map strings to strings")]
    Metadata { path: PathBuf },
    #[error("{path}: tensor `{name}` has unknown dtype `{dtype}`")]
    Dtype { path: PathBuf, name: String, dtype: String },
    #[error("{path}: tensor `{name}` has {rank} dimensions (at most {MAX_RANK} allowed)")]
    Rank { path: PathBuf, name: String, rank: usize },
    #[error("{path}: tensor `{name}` element count or byte size overflows 64 bits")]
    Overflow { path: PathBuf, name: String },
    #[error("{path}: tensor `{name}` data_offsets [{start}, {end}) are reversed")]
    Reversed { path: PathBuf, name: String, start: u64, end: u64 },
    #[error(
        "{path}: tensor `{name}` data [{start}, {end}) lies outside the data section ({len} bytes)"
    )]
    OutOfBounds { path: PathBuf, name: String, start: u64, end: u64, len: u64 },
    #[error("{path}: tensor `{name}` shape needs {expected} bytes but data_offsets give {actual}")]
    SizeMismatch { path: PathBuf, name: String, expected: u64, actual: u64 },
    #[error("{path}: tensors `{first}` and `{second}` share bytes of the data section")]
    Overlap { path: PathBuf, first: String, second: String },
}

/// One tensor's description; `start` and `end` are absolute file offsets, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetensorsTensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub start: u64,
    pub end: u64,
}

/// A safetensors file whose header has been read and validated.
pub struct Safetensors {
    path: PathBuf,
    /// Where the data section starts: 8 + the header length.
    pub data_offset: u64,
    pub file_size: u64,
    metadata: HashMap<String, String>,
    tensors: Vec<SafetensorsTensor>,
}

impl fmt::Debug for Safetensors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Safetensors")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// Bytes per element of each dtype the format defines.
fn dtype_bytes(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

/// The header's top-level entries in file order, duplicates kept so they can be refused
/// (a plain map would silently keep the last one, and two loaders might disagree).
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

/// One tensor entry as the header spells it.
#[derive(Deserialize)]
struct RawTensor {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

impl Safetensors {
    /// Read and validate the header of the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SafetensorsError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| SafetensorsError::Io { path: path.clone(), source };
        let mut file = std::fs::File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < 8 {
            return Err(SafetensorsError::NoHeaderLength { path, len });
        }
        let mut length = [0u8; 8];
        file.read_exact(&mut length).map_err(io)?;
        let header_len = check_header_len(&path, u64::from_le_bytes(length), len)?;
        // The length was checked against the file size, so this allocation is bounded
        // by what is really on disk (and by the cap).
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(io)?;
        Self::parse_header(path, &header, len)
    }

    /// Validate a whole safetensors image held in memory; `label` stands for the file
    /// name in errors.
    pub fn from_bytes(label: impl Into<PathBuf>, bytes: &[u8]) -> Result<Self, SafetensorsError> {
        let path = label.into();
        let len = bytes.len() as u64;
        let Some(length) = bytes.get(..8) else {
            return Err(SafetensorsError::NoHeaderLength { path, len });
        };
        let header_len =
            check_header_len(&path, u64::from_le_bytes(length.try_into().expect("8 bytes")), len)?;
        Self::parse_header(path, &bytes[8..8 + header_len as usize], len)
    }

    fn parse_header(
        path: PathBuf,
        header: &[u8],
        file_size: u64,
    ) -> Result<Self, SafetensorsError> {
        let json_error = |problem: String| SafetensorsError::Json { path: path.clone(), problem };
        let Entries(entries) =
            serde_json::from_slice(header).map_err(|error| json_error(error.to_string()))?;
        let data_offset = 8 + header.len() as u64;
        let data_len = file_size - data_offset;
        let mut seen = HashMap::with_capacity(entries.len());
        let mut metadata = HashMap::new();
        let mut tensors = Vec::with_capacity(entries.len());
        for (name, value) in entries {
            if seen.insert(name.clone(), ()).is_some() {
                return Err(SafetensorsError::Duplicate { path, name });
            }
            if name == METADATA_KEY {
                metadata = serde_json::from_value(value)
                    .map_err(|_| SafetensorsError::Metadata { path: path.clone() })?;
                continue;
            }
            let raw: RawTensor = serde_json::from_value(value)
                .map_err(|error| json_error(format!("tensor `{name}`: {error}")))?;
            tensors.push(check_tensor(&path, name, raw, data_offset, data_len)?);
        }
        check_overlap(&path, &tensors)?;
        Ok(Self { path, data_offset, file_size, metadata, tensors })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The free-form `__metadata__` strings.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }
    /// The tensors, in header order.
    pub fn tensors(&self) -> &[SafetensorsTensor] {
        &self.tensors
    }
}

fn check_header_len(path: &Path, header: u64, len: u64) -> Result<u64, SafetensorsError> {
    if header > MAX_HEADER_BYTES {
        return Err(SafetensorsError::HeaderTooLong { path: path.into(), header });
    }
    if header > len - 8 {
        return Err(SafetensorsError::HeaderPastEnd { path: path.into(), header, len });
    }
    Ok(header)
}

fn check_tensor(
    path: &Path,
    name: String,
    raw: RawTensor,
    data_offset: u64,
    data_len: u64,
) -> Result<SafetensorsTensor, SafetensorsError> {
    let Some(element_bytes) = dtype_bytes(&raw.dtype) else {
        return Err(SafetensorsError::Dtype { path: path.into(), name, dtype: raw.dtype });
    };
    if raw.shape.len() > MAX_RANK {
        return Err(SafetensorsError::Rank { path: path.into(), name, rank: raw.shape.len() });
    }
    let expected = raw
        .shape
        .iter()
        .try_fold(1u64, |product, &dim| product.checked_mul(dim))
        .and_then(|elements| elements.checked_mul(element_bytes));
    let Some(expected) = expected else {
        return Err(SafetensorsError::Overflow { path: path.into(), name });
    };
    let (start, end) = raw.data_offsets;
    if start > end {
        return Err(SafetensorsError::Reversed { path: path.into(), name, start, end });
    }
    if end > data_len {
        return Err(SafetensorsError::OutOfBounds {
            path: path.into(),
            name,
            start,
            end,
            len: data_len,
        });
    }
    if end - start != expected {
        return Err(SafetensorsError::SizeMismatch {
            path: path.into(),
            name,
            expected,
            actual: end - start,
        });
    }
    Ok(SafetensorsTensor {
        name,
        dtype: raw.dtype,
        shape: raw.shape,
        start: data_offset + start,
        end: data_offset + end,
    })
}

/// No two tensors may share a byte: a loader that writes through one view would
/// corrupt the other, and a crafted file could alias a small tensor onto a large one.
fn check_overlap(path: &Path, tensors: &[SafetensorsTensor]) -> Result<(), SafetensorsError> {
    let mut order: Vec<&SafetensorsTensor> =
        tensors.iter().filter(|tensor| tensor.end > tensor.start).collect();
    order.sort_by_key(|tensor| tensor.start);
    for pair in order.windows(2) {
        if pair[1].start < pair[0].end {
            return Err(SafetensorsError::Overlap {
                path: path.into(),
                first: pair[0].name.clone(),
                second: pair[1].name.clone(),
            });
        }
    }
    Ok(())
}
