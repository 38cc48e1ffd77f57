//! Quantized weights on the device: a tensor's GGUF bytes, read in place by the
//! product kernels, split into parts that fit the device's binding limit, and several
//! matrices of one type and width stacked in one buffer (a layer's Q, K and V, or its
//! gate and up projections), so one product computes them all.

use std::sync::Arc;

use hearth_sdk::helpers::GgmlType;
use hearth_sdk::PluginError;

use crate::device::{Gpu, GpuBuffer};

/// Weight types the kernels read in their stored form.
pub const SUPPORTED_TYPES: [GgmlType; 11] = hearth_model::arch::TENSOR_TYPES;

/// The largest part of a weight the device binds.
pub fn part_limit(gpu: &Gpu) -> u64 {
    gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size) - 8
}

/// One buffer range of a weight: whole rows, so every part is a matrix of its own.
/// The buffer may be shared with the other matrices of a stack.
pub struct Part {
    pub buffer: Arc<GpuBuffer>,
    /// This part's first row in the whole weight, and its rows.
    pub row0: u32,
    pub rows: u32,
    /// The buffer row where the part's rows start (0 unless it is one of a stack).
    pub first: u32,
}

/// A 2-D weight in its GGUF encoding, on the device: one matrix, or `matrices` of
/// `nrows / matrices` rows each, stacked (a mixture of experts' 3-D tensor), which no
/// part splits.
pub struct Weight {
    pub ty: GgmlType,
    pub ncols: u32,
    pub nrows: u32,
    pub matrices: u32,
    pub parts: Vec<Part>,
}

impl Weight {
    /// Upload `bytes` (rows of `ncols` elements of `ty`), split into parts no larger than
    /// the device's storage binding limit.
    pub fn upload(
        gpu: &Gpu,
        name: &str,
        ty: GgmlType,
        ncols: u64,
        nrows: u64,
        bytes: &[u8],
    ) -> Result<Self, PluginError> {
        Self::upload_in_parts(gpu, name, ty, [ncols, nrows], bytes, part_limit(gpu))
    }

    /// Upload `shape[2]` stacked matrices of `shape[1]` rows of `shape[0]` elements (a
    /// 3-D expert tensor), split into parts of whole matrices.
    pub fn upload_stacked(
        gpu: &Gpu,
        name: &str,
        ty: GgmlType,
        shape: [u64; 3],
        bytes: &[u8],
    ) -> Result<Self, PluginError> {
        Self::upload_matrices(gpu, name, ty, shape, bytes, part_limit(gpu))
    }

    /// [`Weight::upload`] with parts of at most `part_limit` bytes (tests use a small
    /// limit to exercise splitting without a huge tensor).
    pub fn upload_in_parts(
        gpu: &Gpu,
        name: &str,
        ty: GgmlType,
        shape: [u64; 2],
        bytes: &[u8],
        part_limit: u64,
    ) -> Result<Self, PluginError> {
        let [ncols, nrows] = shape;
        Self::upload_matrices(gpu, name, ty, [ncols, nrows, 1], bytes, part_limit)
    }

    /// `shape[2]` matrices of `shape[1]` rows of `shape[0]` elements, stacked, in parts
    /// of at most `part_limit` bytes (or one matrix, where a matrix is larger) that
    /// hold whole matrices.
    pub fn upload_matrices(
        gpu: &Gpu,
        name: &str,
        ty: GgmlType,
        shape: [u64; 3],
        bytes: &[u8],
        part_limit: u64,
    ) -> Result<Self, PluginError> {
        let [ncols, matrix_rows, matrices] = shape;
        let nrows = matrix_rows * matrices;
        if !SUPPORTED_TYPES.contains(&ty) {
            return Err(PluginError::unsupported(format!(
                "tensor `{name}` has type {ty}, which the WebGPU kernels do not read"
            )));
        }
        let (block, block_bytes) = ty.block();
        // The kernels expand 32 elements at a time, within a block of the type.
        let multiple = block.max(32);
        if ncols % multiple != 0 || ncols > u64::from(u32::MAX) || nrows > u64::from(u32::MAX) {
            return Err(PluginError::unsupported(format!(
                "tensor `{name}` ({ty}) has rows of {ncols} elements; the kernels need a multiple of {multiple}"
            )));
        }
        let row_bytes = ncols / block * block_bytes;
        let together = if matrices > 1 { matrix_rows } else { 1 };
        let rows_per_part = (part_limit / row_bytes / together).max(1) * together;
        let mut parts = Vec::new();
        let mut row0 = 0;
        while row0 < nrows {
            let rows = rows_per_part.min(nrows - row0);
            let start = (row0 * row_bytes) as usize;
            let chunk = bytes.get(start..start + (rows * row_bytes) as usize).ok_or_else(|| {
                PluginError::model_file(format!("tensor `{name}` is shorter than its shape"))
            })?;
            parts.push(Part {
                buffer: Arc::new(gpu.upload(name, chunk)),
                row0: row0 as u32,
                rows: rows as u32,
                first: 0,
            });
            row0 += rows;
        }
        Ok(Self { ty, ncols: ncols as u32, nrows: nrows as u32, matrices: matrices as u32, parts })
    }

    /// Matrices of one type `ty` and width `ncols`, given as (rows, bytes), uploaded as
    /// one weight whose rows are theirs one after another, with a view of each (their
    /// buffer shared: no byte is stored twice). `None` where together they would not fit
    /// one part of at most `part_limit` bytes: a stack's products assume one buffer.
    pub fn upload_stack(
        gpu: &Gpu,
        name: &str,
        ty: GgmlType,
        ncols: u64,
        matrices: &[(u64, &[u8])],
        part_limit: u64,
    ) -> Result<Option<(Self, Vec<Self>)>, PluginError> {
        let bytes: usize = matrices.iter().map(|(_, bytes)| bytes.len()).sum();
        if bytes as u64 > part_limit {
            return Ok(None);
        }
        let mut stacked = Vec::with_capacity(bytes);
        matrices.iter().for_each(|(_, matrix)| stacked.extend_from_slice(matrix));
        let nrows = matrices.iter().map(|&(rows, _)| rows).sum();
        let whole = Self::upload_in_parts(gpu, name, ty, [ncols, nrows], &stacked, part_limit)?;
        let mut first = 0;
        let views = matrices
            .iter()
            .map(|&(rows, _)| {
                let view = whole.rows(first, rows as u32);
                first += rows as u32;
                view
            })
            .collect();
        Ok(Some((whole, views)))
    }

    /// Rows `first..first + rows` of a weight of one part, as a weight of its own over
    /// the same buffer.
    pub fn rows(&self, first: u32, rows: u32) -> Self {
        let [part] = self.parts.as_slice() else {
            panic!("a view of rows is taken of a weight of one part");
        };
        assert!(first + rows <= part.rows, "rows {first}..{} of {}", first + rows, part.rows);
        Self {
            ty: self.ty,
            ncols: self.ncols,
            nrows: rows,
            matrices: 1,
            parts: vec![Part {
                buffer: part.buffer.clone(),
                row0: 0,
                rows,
                first: part.first + first,
            }],
        }
    }
}
