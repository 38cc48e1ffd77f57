//! Which files of the plugins folder changed since the last look, and which of them are
//! complete enough to load.
//!
//! A file being copied in grows for a while; loading it half-written would fail (or
//! worse, map a truncated library). So a new or changed file is loaded only once its
//! size and modification time have stayed the same for a settle period and it is a
//! whole library ([`super::elf`]): a slow copy can pause for longer than the settle
//! period. Until then [`FolderChanges::waiting`] asks the caller to look again. A file
//! that stays cut short for [`PATIENCE_SETTLES`] settle periods is handed over anyway,
//! to be refused with the reason.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::registry::is_library;

/// How many settle periods an unchanged but incomplete file is waited for.
const PATIENCE_SETTLES: u32 = 20;

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
}

/// What to do after a look at the folder.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FolderChanges {
    /// New or changed libraries, complete: load them (replacing what they replace).
    pub load: Vec<PathBuf>,
    /// Libraries that are gone: take them out of service.
    pub remove: Vec<PathBuf>,
    /// Some file is still changing: look again after the settle period.
    pub waiting: bool,
}

/// Remembers the plugins folder as last acted on.
#[derive(Debug)]
pub struct FolderTracker {
    dir: PathBuf,
    settle: Duration,
    /// The version of each library last loaded (or refused).
    settled: HashMap<PathBuf, Fingerprint>,
    /// A changed library's version and when it was first seen unchanged.
    pending: HashMap<PathBuf, (Fingerprint, Instant)>,
}

impl FolderTracker {
    /// Start from the folder as it is now, which the initial scan has just loaded.
    pub fn new(dir: &Path, settle: Duration) -> Self {
        Self { dir: dir.to_path_buf(), settle, settled: libraries(dir), pending: HashMap::new() }
    }

    /// The settle period: how long a file must stay unchanged before it is loaded.
    pub fn settle(&self) -> Duration {
        self.settle
    }

    /// Compare the folder with what was last acted on.
    pub fn check(&mut self, now: Instant) -> FolderChanges {
        let current = libraries(&self.dir);
        let mut changes = FolderChanges::default();
        for (path, fingerprint) in &current {
            if self.settled.get(path) == Some(fingerprint) {
                self.pending.remove(path);
                continue;
            }
            match self.pending.get(path) {
                Some((seen, since))
                    if seen == fingerprint
                        && now.duration_since(*since) >= self.settle
                        && (super::elf::check_whole(path).is_ok()
                            || now.duration_since(*since) >= self.settle * PATIENCE_SETTLES) =>
                {
                    self.pending.remove(path);
                    self.settled.insert(path.clone(), *fingerprint);
                    changes.load.push(path.clone());
                }
                Some((seen, _)) if seen == fingerprint => changes.waiting = true,
                _ => {
                    self.pending.insert(path.clone(), (*fingerprint, now));
                    changes.waiting = true;
                }
            }
        }
        self.pending.retain(|path, _| current.contains_key(path));
        let gone: Vec<PathBuf> =
            self.settled.keys().filter(|path| !current.contains_key(*path)).cloned().collect();
        for path in gone {
            self.settled.remove(&path);
            changes.remove.push(path);
        }
        changes.load.sort();
        changes.remove.sort();
        changes
    }
}

/// Every library file in `dir` with its fingerprint; an unreadable folder is empty.
fn libraries(dir: &Path) -> HashMap<PathBuf, Fingerprint> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| is_library(path))
        .filter_map(|path| {
            let metadata = std::fs::metadata(&path).ok().filter(std::fs::Metadata::is_file)?;
            Some((path, Fingerprint { len: metadata.len(), modified: metadata.modified().ok() }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLE: Duration = Duration::from_millis(300);

    #[test]
    fn a_new_file_is_loaded_only_after_it_stays_unchanged_for_the_settle_period() {
        let dir = tempfile::tempdir().unwrap();
        let mut tracker = FolderTracker::new(dir.path(), SETTLE);
        let start = Instant::now();
        let plugin = dir.path().join("libnew.so");
        std::fs::write(&plugin, b"half").unwrap();
        assert_eq!(
            tracker.check(start),
            FolderChanges { waiting: true, ..FolderChanges::default() }
        );
        // Still being written: the clock of the settle period starts again.
        std::fs::write(&plugin, b"half and the rest").unwrap();
        assert!(tracker.check(start + SETTLE).waiting);
        assert!(tracker.check(start + SETTLE + SETTLE / 2).load.is_empty());
        let changes = tracker.check(start + SETTLE * 2);
        assert_eq!(changes.load, vec![plugin.clone()]);
        assert!(!changes.waiting);
        assert_eq!(tracker.check(start + SETTLE * 3), FolderChanges::default());
    }

    #[test]
    fn a_library_whose_copy_pauses_longer_than_the_settle_period_is_not_loaded_half_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut tracker = FolderTracker::new(dir.path(), SETTLE);
        let start = Instant::now();
        let whole = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let plugin = dir.path().join("libslow.so");
        std::fs::write(&plugin, &whole[..whole.len() / 2]).unwrap();
        assert!(tracker.check(start).waiting);
        // Unchanged for several settle periods, and still only half there.
        let changes = tracker.check(start + SETTLE * 3);
        assert!(changes.load.is_empty() && changes.waiting, "{changes:?}");
        std::fs::write(&plugin, &whole).unwrap();
        let finished = start + SETTLE * 4;
        assert!(tracker.check(finished).waiting);
        assert_eq!(tracker.check(finished + SETTLE).load, vec![plugin.clone()]);
        // One that never completes is handed over in the end, to be refused with why.
        let stuck = dir.path().join("libstuck.so");
        std::fs::write(&stuck, &whole[..whole.len() / 2]).unwrap();
        let later = finished + SETTLE * 2;
        assert!(tracker.check(later).waiting);
        assert!(tracker.check(later + SETTLE * 2).load.is_empty());
        assert_eq!(tracker.check(later + SETTLE * PATIENCE_SETTLES).load, vec![stuck]);
    }

    #[test]
    fn a_removed_file_is_reported_once_and_other_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let plugin = dir.path().join("libold.so");
        std::fs::write(&plugin, b"library").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"not a library").unwrap();
        std::fs::write(dir.path().join(".libcopying.so"), b"hidden: a copy in progress").unwrap();
        let mut tracker = FolderTracker::new(dir.path(), SETTLE);
        assert_eq!(tracker.check(Instant::now()), FolderChanges::default());
        std::fs::remove_file(&plugin).unwrap();
        assert_eq!(tracker.check(Instant::now()).remove, vec![plugin]);
        assert_eq!(tracker.check(Instant::now()), FolderChanges::default());
    }
}
