//! Tests of the safetensors reader on small hand-built files, one per validation rule.

use super::safetensors::{Safetensors, SafetensorsError};

/// A file image: the header length, `header` as given, then `data_len` zero bytes.
fn image(header: &str, data_len: usize) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(bytes.len() + data_len, 0);
    bytes
}

fn open(header: &str, data_len: usize) -> Result<Safetensors, SafetensorsError> {
    Safetensors::from_bytes("test.safetensors", &image(header, data_len))
}

const TWO_TENSORS: &str = r#"{"__metadata__":{"format":"pt"},
    "a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},
    "b":{"dtype":"BF16","shape":[4],"data_offsets":[16,24]}}"#;

#[test]
fn a_well_formed_file_lists_its_tensors_at_absolute_offsets() {
    let file = open(TWO_TENSORS, 24).unwrap();
    let header_end = 8 + TWO_TENSORS.len() as u64;
    assert_eq!(file.data_offset, header_end);
    assert_eq!(file.tensors().len(), 2);
    assert_eq!(file.tensors()[0].name, "a");
    assert_eq!(
        (file.tensors()[1].start, file.tensors()[1].end),
        (header_end + 16, header_end + 24)
    );
    assert_eq!(file.metadata()["format"], "pt");
}

#[test]
fn a_file_shorter_than_the_length_prefix_is_truncated() {
    let error = Safetensors::from_bytes("x.safetensors", &[1, 2, 3]).unwrap_err();
    assert!(matches!(error, SafetensorsError::NoHeaderLength { len: 3, .. }), "{error}");
    assert!(error.to_string().starts_with("x.safetensors: truncated"), "{error}");
}

#[test]
fn a_header_length_over_the_cap_or_past_the_end_is_refused_before_any_allocation() {
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    assert!(matches!(
        Safetensors::from_bytes("x", &huge),
        Err(SafetensorsError::HeaderTooLong { .. })
    ));
    let mut past = 1000u64.to_le_bytes().to_vec();
    past.extend_from_slice(b"{}");
    assert!(matches!(
        Safetensors::from_bytes("x", &past),
        Err(SafetensorsError::HeaderPastEnd { .. })
    ));
}

#[test]
fn a_header_that_is_not_a_json_object_is_refused() {
    assert!(matches!(open("[1,2]", 0), Err(SafetensorsError::Json { .. })));
    assert!(matches!(open("{\"a\":", 0), Err(SafetensorsError::Json { .. })));
    assert!(matches!(open(r#"{"a":{"dtype":"F32"}}"#, 0), Err(SafetensorsError::Json { .. })));
}

#[test]
fn a_name_given_twice_is_refused() {
    let header = r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#;
    assert!(
        matches!(open(header, 2), Err(SafetensorsError::Duplicate { name, .. }) if name == "a")
    );
}

#[test]
fn metadata_must_be_strings() {
    assert!(matches!(
        open(r#"{"__metadata__":{"n":1}}"#, 0),
        Err(SafetensorsError::Metadata { .. })
    ));
}

#[test]
fn an_unknown_dtype_or_too_many_dimensions_is_refused() {
    let dtype = r#"{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}"#;
    assert!(matches!(open(dtype, 1), Err(SafetensorsError::Dtype { .. })));
    let rank = r#"{"a":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}}"#;
    assert!(matches!(open(rank, 1), Err(SafetensorsError::Rank { rank: 9, .. })));
}

#[test]
fn a_shape_whose_size_overflows_is_refused() {
    let header = r#"{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#;
    assert!(matches!(open(header, 8), Err(SafetensorsError::Overflow { .. })));
}

#[test]
fn offsets_must_be_ordered_inside_the_data_and_match_the_shape() {
    let reversed = r#"{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,2]}}"#;
    assert!(matches!(open(reversed, 8), Err(SafetensorsError::Reversed { .. })));
    let past = r#"{"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]}}"#;
    assert!(matches!(open(past, 8), Err(SafetensorsError::OutOfBounds { len: 8, .. })));
    let mismatch = r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
    assert!(matches!(
        open(mismatch, 8),
        Err(SafetensorsError::SizeMismatch { expected: 12, actual: 8, .. })
    ));
}

#[test]
fn tensors_sharing_bytes_are_refused() {
    let header = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#;
    assert!(matches!(open(header, 8), Err(SafetensorsError::Overlap { .. })));
}

#[test]
fn a_file_on_disk_is_read_header_first() {
    let dir = std::env::temp_dir().join(format!("hearth-safetensors-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ok.safetensors");
    std::fs::write(&path, image(TWO_TENSORS, 24)).unwrap();
    assert_eq!(Safetensors::open(&path).unwrap().tensors().len(), 2);
    std::fs::write(&path, image(TWO_TENSORS, 20)).unwrap();
    let error = Safetensors::open(&path).unwrap_err();
    assert!(
        error.to_string().contains("ok.safetensors")
            && error.to_string().contains("outside the data section"),
        "{error}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
