//! Whether a plugin file is a whole ELF library, checked before any process of ours
//! maps it.
//!
//! The dynamic loader reads a library's headers with `read` but maps its segments with
//! `mmap`; a file cut short (a half-finished copy, a full disk) maps pages that lie past
//! its end, and the first touch of one kills the process with SIGBUS — `hearth plugins`
//! ended with "Bus error" and nothing else. So every offset and size the ELF header,
//! the program headers and the section headers name is checked against the file's
//! length first, and a library that does not fit is refused with what is missing.
//! Files that are not ELF at all are left to the loader, whose message is clean.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// `SHT_NOBITS`: a section that occupies no bytes in the file (`.bss`).
const SECTION_WITHOUT_BYTES: u64 = 8;

/// Reads integers of the file's class and byte order.
struct Fields<'a> {
    bytes: &'a [u8],
    little: bool,
    wide: bool,
}

impl Fields<'_> {
    fn int(&self, at: usize, size: usize) -> Option<u64> {
        let bytes = self.bytes.get(at..at + size)?;
        let mut value = 0u64;
        for index in 0..size {
            let byte = if self.little { bytes[size - 1 - index] } else { bytes[index] };
            value = value << 8 | u64::from(byte);
        }
        Some(value)
    }

    /// A word: 8 bytes in a 64-bit file, 4 in a 32-bit one.
    fn word(&self, at64: usize, at32: usize) -> Option<u64> {
        if self.wide {
            self.int(at64, 8)
        } else {
            self.int(at32, 4)
        }
    }

    fn half(&self, at64: usize, at32: usize) -> Option<u64> {
        self.int(if self.wide { at64 } else { at32 }, 2)
    }
}

/// `Ok` when `path` is not an ELF file or is a whole one; otherwise what is missing.
pub fn check_whole(path: &Path) -> Result<(), String> {
    let mut file = File::open(path).map_err(|error| format!("cannot read: {error}"))?;
    let length = file.metadata().map_err(|error| format!("cannot read: {error}"))?.len();
    let mut header = [0u8; 64];
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(count) => read += count,
            Err(error) => return Err(format!("cannot read: {error}")),
        }
    }
    if read < 4 || header[..4] != *b"\x7fELF" {
        return Ok(());
    }
    let wide = header[4] == 2;
    let needed = if wide { 64 } else { 52 };
    if read < needed {
        return Err(format!("the file is cut short: {length} bytes, less than its own ELF header"));
    }
    let fields = Fields { bytes: &header, little: header[5] != 2, wide };
    let missing = |what: &str, end: u64| {
        format!(
            "the file is cut short (an unfinished copy?): its {what} ends at byte {end}, but the file has {length} bytes"
        )
    };
    let table = |offset: Option<u64>,
                 size: Option<u64>,
                 count: Option<u64>|
     -> Option<(u64, u64, u64)> { Some((offset?, size?, count?)) };
    let (program_offset, program_size, program_count) =
        table(fields.word(0x20, 0x1c), fields.half(0x36, 0x2a), fields.half(0x38, 0x2c))
            .ok_or("unreadable ELF header")?;
    let (section_offset, section_size, section_count) =
        table(fields.word(0x28, 0x20), fields.half(0x3a, 0x2e), fields.half(0x3c, 0x30))
            .ok_or("unreadable ELF header")?;
    let program_end = program_offset.saturating_add(program_size.saturating_mul(program_count));
    if program_end > length {
        return Err(missing("program header table", program_end));
    }
    let section_end = section_offset.saturating_add(section_size.saturating_mul(section_count));
    if section_end > length {
        return Err(missing("section header table", section_end));
    }
    // Each table is at most 65535 entries of a few dozen bytes (the counts are 16-bit).
    let programs = read_at(path, program_offset, program_end - program_offset)?;
    let programs = Fields { bytes: &programs, ..fields };
    let sections = read_at(path, section_offset, section_end - section_offset)?;
    let sections = Fields { bytes: &sections, ..fields };
    for index in 0..program_count {
        let at = (index * program_size) as usize;
        let offset = programs.word(at + 8, at + 4);
        let size = programs.word(at + 32, at + 16);
        let (Some(offset), Some(size)) = (offset, size) else {
            return Err(format!("program header {index} is unreadable"));
        };
        let end = offset.saturating_add(size);
        if end > length {
            return Err(missing(&format!("segment {index}"), end));
        }
    }
    for index in 0..section_count {
        let at = (index * section_size) as usize;
        let kind = sections.int(at + 4, 4);
        let offset = sections.word(at + 24, at + 16);
        let size = sections.word(at + 32, at + 20);
        let (Some(kind), Some(offset), Some(size)) = (kind, offset, size) else {
            return Err(format!("section header {index} is unreadable"));
        };
        let end = offset.saturating_add(size);
        if kind != SECTION_WITHOUT_BYTES && end > length {
            return Err(missing(&format!("section {index}"), end));
        }
    }
    Ok(())
}

/// `length` bytes of the file at `offset`.
fn read_at(path: &Path, offset: u64, length: u64) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut file| {
            file.seek(SeekFrom::Start(offset))?;
            file.take(length).read_to_end(&mut bytes)
        })
        .map_err(|error| format!("cannot read: {error}"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary: a whole ELF file with program and section headers.
    fn whole_elf() -> Vec<u8> {
        std::fs::read(std::env::current_exe().unwrap()).unwrap()
    }

    #[test]
    fn a_whole_library_passes_and_the_same_file_cut_anywhere_is_refused_saying_so() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = whole_elf();
        let path = dir.path().join("libwhole.so");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(check_whole(&path), Ok(()));
        for cut in [10, 40, 100, 4096, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let refused = check_whole(&path).expect_err(&format!("cut at {cut}"));
            assert!(refused.contains("cut short"), "cut at {cut}: {refused}");
        }
    }

    #[test]
    fn files_that_are_not_elf_are_left_to_the_loader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("libtext.so");
        std::fs::write(&path, b"not a library at all").unwrap();
        assert_eq!(check_whole(&path), Ok(()));
        std::fs::write(&path, b"").unwrap();
        assert_eq!(check_whole(&path), Ok(()));
    }
}
