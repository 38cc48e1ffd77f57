//! Tests of the GGUF reader on small hand-built files, one per validation rule.

use super::ggml::GgmlType;
use super::gguf::{Gguf, GgufError, Value};

/// Builds GGUF images field by field, so a test can break exactly one rule.
struct Builder {
    version: u32,
    kvs: Vec<u8>,
    kv_count: u64,
    infos: Vec<u8>,
    tensor_count: u64,
    data: Vec<u8>,
    alignment: u64,
}

impl Builder {
    fn new() -> Self {
        Self {
            version: 3,
            kvs: Vec::new(),
            kv_count: 0,
            infos: Vec::new(),
            tensor_count: 0,
            data: Vec::new(),
            alignment: 32,
        }
    }

    fn string(out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(&(text.len() as u64).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    }

    /// A key with a raw type id and raw value bytes.
    fn kv_raw(mut self, key: &str, value_type: u32, value: &[u8]) -> Self {
        Self::string(&mut self.kvs, key);
        self.kvs.extend_from_slice(&value_type.to_le_bytes());
        self.kvs.extend_from_slice(value);
        self.kv_count += 1;
        self
    }

    fn kv_str(self, key: &str, text: &str) -> Self {
        let mut value = Vec::new();
        Self::string(&mut value, text);
        self.kv_raw(key, 8, &value)
    }

    /// A tensor info with explicit fields; `data` is appended at the matching offset.
    fn tensor_raw(mut self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> Self {
        Self::string(&mut self.infos, name);
        self.infos.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for dim in dims {
            self.infos.extend_from_slice(&dim.to_le_bytes());
        }
        self.infos.extend_from_slice(&type_id.to_le_bytes());
        self.infos.extend_from_slice(&offset.to_le_bytes());
        self.tensor_count += 1;
        self
    }

    /// An F32 tensor whose data is really present, placed after the previous one.
    fn tensor_f32(self, name: &str, values: &[f32]) -> Self {
        let offset = self.data.len() as u64;
        let mut this = self.tensor_raw(name, &[values.len() as u64], 0, offset);
        for value in values {
            this.data.extend_from_slice(&value.to_le_bytes());
        }
        let padded = this.data.len().next_multiple_of(this.alignment as usize);
        this.data.resize(padded, 0);
        this
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.tensor_count.to_le_bytes());
        out.extend_from_slice(&self.kv_count.to_le_bytes());
        out.extend_from_slice(&self.kvs);
        out.extend_from_slice(&self.infos);
        out.resize(out.len().next_multiple_of(self.alignment as usize), 0);
        out.extend_from_slice(&self.data);
        out
    }

    fn open(&self) -> Result<Gguf, GgufError> {
        Gguf::from_bytes("test.gguf", self.bytes())
    }
}

fn error_of(builder: &Builder) -> GgufError {
    builder.open().expect_err("the file should be refused")
}

#[test]
fn a_well_formed_file_exposes_metadata_of_every_type_and_tensor_bytes() {
    let array: Vec<u8> = [
        6u32.to_le_bytes().as_slice(),
        &2u64.to_le_bytes(),
        &1.5f32.to_le_bytes(),
        &2.5f32.to_le_bytes(),
    ]
    .concat();
    let builder = Builder::new()
        .kv_raw("u8", 0, &[7])
        .kv_raw("i8", 1, &[0xff])
        .kv_raw("u16", 2, &9u16.to_le_bytes())
        .kv_raw("i16", 3, &(-9i16).to_le_bytes())
        .kv_raw("u32", 4, &10u32.to_le_bytes())
        .kv_raw("i32", 5, &(-10i32).to_le_bytes())
        .kv_raw("f32", 6, &0.5f32.to_le_bytes())
        .kv_raw("bool", 7, &[1])
        .kv_str("name", "tiny")
        .kv_raw("floats", 9, &array)
        .kv_raw("u64", 10, &11u64.to_le_bytes())
        .kv_raw("i64", 11, &(-11i64).to_le_bytes())
        .kv_raw("f64", 12, &0.25f64.to_le_bytes())
        .tensor_f32("a", &[1.0, 2.0])
        .tensor_f32("b", &[3.0; 3]);
    let gguf = builder.open().unwrap();
    assert_eq!(gguf.get("u8"), Some(&Value::U8(7)));
    assert_eq!(gguf.get("i8"), Some(&Value::I8(-1)));
    assert_eq!(gguf.get("i16"), Some(&Value::I16(-9)));
    assert_eq!(gguf.u64("u32").unwrap(), 10);
    assert_eq!(gguf.get("i32"), Some(&Value::I32(-10)));
    assert_eq!(gguf.f64("f32").unwrap(), 0.5);
    assert_eq!(gguf.get("bool"), Some(&Value::Bool(true)));
    assert_eq!(gguf.str("name").unwrap(), "tiny");
    assert_eq!(gguf.array("floats").unwrap(), &[Value::F32(1.5), Value::F32(2.5)]);
    assert_eq!(gguf.u64("u64").unwrap(), 11);
    assert_eq!(gguf.get("i64"), Some(&Value::I64(-11)));
    assert_eq!(gguf.f64("f64").unwrap(), 0.25);
    assert_eq!(gguf.u64("u16").unwrap(), 9);
    let b = gguf.tensor("b").unwrap();
    assert_eq!((b.ty, b.elements(), b.size), (GgmlType::F32, 3, 12));
    assert_eq!(
        gguf.tensor_data(b),
        [3.0f32; 3].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>()
    );
    assert_eq!(gguf.data_offset % 32, 0);
}

#[test]
fn metadata_accessors_name_a_missing_or_mistyped_key() {
    let gguf = Builder::new().kv_str("name", "x").open().unwrap();
    assert!(gguf
        .u64("name")
        .unwrap_err()
        .to_string()
        .contains("`name`: is not a non-negative integer"));
    assert!(gguf.str("absent").unwrap_err().to_string().contains("`absent`: is missing"));
}

#[test]
fn a_wrong_magic_is_refused_and_the_error_names_the_file() {
    let mut bytes = Builder::new().bytes();
    bytes[0] = b'X';
    let error = Gguf::from_bytes("some/model.gguf", bytes).unwrap_err();
    assert!(matches!(error, GgufError::Magic { .. }));
    assert!(error.to_string().starts_with("some/model.gguf: not a GGUF file"));
}

#[test]
fn versions_other_than_2_and_3_are_refused() {
    let mut builder = Builder::new();
    builder.version = 1;
    assert!(matches!(error_of(&builder), GgufError::Version { version: 1, .. }));
    builder.version = 2;
    assert!(builder.open().is_ok());
}

#[test]
fn a_truncated_header_is_refused() {
    let bytes = Builder::new().bytes()[..10].to_vec();
    assert!(matches!(Gguf::from_bytes("t.gguf", bytes), Err(GgufError::Truncated { .. })));
}

#[test]
fn counts_that_cannot_fit_in_the_file_are_refused_before_allocating() {
    let mut builder = Builder::new();
    builder.tensor_count = u64::MAX / 2;
    assert!(matches!(error_of(&builder), GgufError::Count { what: "tensor", .. }));
    let mut builder = Builder::new();
    builder.kv_count = 1 << 40;
    assert!(matches!(error_of(&builder), GgufError::Count { what: "metadata", .. }));
}

#[test]
fn strings_over_the_cap_are_refused() {
    let mut value = (u64::MAX).to_le_bytes().to_vec();
    value.extend_from_slice(b"abc");
    assert!(matches!(error_of(&Builder::new().kv_raw("k", 8, &value)), GgufError::TooLong { .. }));
}

#[test]
fn strings_running_past_the_end_are_truncation() {
    let value = 100u64.to_le_bytes();
    assert!(matches!(
        error_of(&Builder::new().kv_raw("k", 8, &value)),
        GgufError::Truncated { .. }
    ));
}

#[test]
fn arrays_over_the_cap_or_the_file_size_are_refused() {
    let huge = [0u32.to_le_bytes().as_slice(), &(1u64 << 40).to_le_bytes()].concat();
    assert!(matches!(error_of(&Builder::new().kv_raw("k", 9, &huge)), GgufError::TooLong { .. }));
    let long = [0u32.to_le_bytes().as_slice(), &(1u64 << 20).to_le_bytes()].concat();
    assert!(matches!(error_of(&Builder::new().kv_raw("k", 9, &long)), GgufError::Count { .. }));
}

#[test]
fn unknown_value_types_and_invalid_utf8_are_refused() {
    assert!(matches!(
        error_of(&Builder::new().kv_raw("k", 13, &[0])),
        GgufError::ValueType { value_type: 13, .. }
    ));
    let value = [2u64.to_le_bytes().as_slice(), &[0xc3, 0x28]].concat();
    assert!(matches!(error_of(&Builder::new().kv_raw("k", 8, &value)), GgufError::Utf8 { .. }));
}

#[test]
fn duplicate_metadata_keys_are_refused() {
    let builder = Builder::new().kv_str("k", "a").kv_str("k", "b");
    assert!(matches!(error_of(&builder), GgufError::DuplicateKey { .. }));
}

#[test]
fn tensors_need_one_to_four_non_zero_dimensions() {
    let builder = Builder::new().tensor_raw("t", &[1, 1, 1, 1, 1], 0, 0);
    assert!(matches!(error_of(&builder), GgufError::Dims { dims: 5, .. }));
    let builder = Builder::new().tensor_raw("t", &[], 0, 0);
    assert!(matches!(error_of(&builder), GgufError::Dims { dims: 0, .. }));
    let builder = Builder::new().tensor_raw("t", &[4, 0], 0, 0);
    assert!(matches!(error_of(&builder), GgufError::ZeroDim { .. }));
}

#[test]
fn unknown_tensor_types_are_refused() {
    let builder = Builder::new().tensor_raw("t", &[4], 4, 0);
    assert!(matches!(error_of(&builder), GgufError::TensorType { type_id: 4, .. }));
}

#[test]
fn element_counts_that_overflow_are_refused() {
    let builder = Builder::new().tensor_raw("t", &[1 << 32, 1 << 32, 1 << 8], 0, 0);
    assert!(matches!(error_of(&builder), GgufError::Overflow { .. }));
}

#[test]
fn quantized_rows_must_be_whole_blocks() {
    let builder = Builder::new().tensor_raw("t", &[48, 2], 8, 0);
    let error = error_of(&builder);
    assert!(matches!(error, GgufError::BlockSize { row: 48, block: 32, .. }));
    assert!(error.to_string().contains("Q8_0"));
}

#[test]
fn alignment_must_be_a_power_of_two() {
    let builder = Builder::new().kv_raw("general.alignment", 4, &24u32.to_le_bytes());
    assert!(matches!(error_of(&builder), GgufError::Alignment { alignment: 24, .. }));
}

#[test]
fn tensor_offsets_must_be_aligned() {
    let builder = Builder::new().tensor_raw("t", &[1], 0, 4);
    assert!(matches!(error_of(&builder), GgufError::Misaligned { offset: 4, .. }));
}

#[test]
fn tensor_data_must_lie_inside_the_file() {
    let builder = Builder::new().tensor_raw("t", &[64], 0, 0);
    assert!(matches!(error_of(&builder), GgufError::OutOfBounds { .. }));
    let builder = Builder::new().tensor_raw("t", &[1], 0, u64::MAX - 31);
    assert!(matches!(error_of(&builder), GgufError::OutOfBounds { .. }));
}

#[test]
fn duplicate_tensor_names_are_refused() {
    let builder = Builder::new().tensor_f32("t", &[1.0]).tensor_f32("t", &[2.0]);
    assert!(matches!(error_of(&builder), GgufError::DuplicateTensor { .. }));
}
