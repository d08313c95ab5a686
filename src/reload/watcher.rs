//! The file watcher: notify's threads watch the directories of the tracked files, and report
//! the tracked files whose content changed over a channel to the host thread.
//!
//! Directories, not files: an editor that saves by writing a temporary file and renaming it
//! over the original replaces the file's inode, and a watch on the old inode would go quiet.
//! Content, not timestamps: a `touch`, a save without edits or a checkout that restores the
//! same bytes must not reload. The hashing happens on the debouncer's thread, so the host
//! thread only hears about real changes.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{EventKind, PollWatcher, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, NoCache, RecommendedCache, new_debouncer_opt};
use tokio::sync::mpsc;

/// How long a burst of events for one save is gathered before it is reported.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// How often the debouncer looks for gathered events that have waited long enough.
const TICK: Duration = Duration::from_millis(5);
/// How often `--poll` scans the watched directories.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How changes are noticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchMode {
    /// The operating system's file events (inotify, FSEvents, ReadDirectoryChanges).
    Events,
    /// Scanning the directories every 100 ms: for network and container file systems that
    /// deliver no events.
    Poll,
}

/// Watches a set of files; dropping it (or [`FileWatcher::stop`]) stops notify's threads.
pub struct FileWatcher {
    backend: Backend,
    tracked: Arc<Mutex<Tracked>>,
    dirs: HashSet<PathBuf>,
}

enum Backend {
    Events(Debouncer<RecommendedWatcher, RecommendedCache>),
    Poll(Debouncer<PollWatcher, NoCache>),
}

/// The tracked files and the hash of the content last seen in each (`None`: unreadable).
#[derive(Default)]
struct Tracked {
    hashes: HashMap<PathBuf, Option<u64>>,
}

/// Why the watcher could not start or watch a directory.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {what}: {source}")]
pub struct WatchError {
    what: String,
    source: notify::Error,
}

impl FileWatcher {
    /// Starts notify's threads; batches of changed files (absolute paths) arrive on the receiver.
    pub fn start(mode: WatchMode) -> Result<(FileWatcher, mpsc::UnboundedReceiver<Vec<PathBuf>>), WatchError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let tracked = Arc::new(Mutex::new(Tracked::default()));
        let shared = tracked.clone();
        let handler = move |result: DebounceEventResult| match result {
            Ok(events) => {
                let paths = events
                    .iter()
                    // Reading a file (ours included: the hash, the compile) is not a change.
                    .filter(|e| !matches!(e.event.kind, EventKind::Access(_)))
                    .flat_map(|e| e.event.paths.iter());
                let changed = shared.lock().expect("the watcher's lock is never poisoned").changed(paths);
                if !changed.is_empty() {
                    let _ = tx.send(changed);
                }
            }
            Err(errors) => {
                for e in errors {
                    eprintln!("watch: {e}");
                }
            }
        };
        let failed = |source| WatchError { what: "files (the watcher did not start)".into(), source };
        let backend = match mode {
            WatchMode::Events => Backend::Events(
                new_debouncer_opt(DEBOUNCE, Some(TICK), handler, RecommendedCache::new(), notify::Config::default())
                    .map_err(failed)?,
            ),
            WatchMode::Poll => {
                let config = notify::Config::default().with_poll_interval(POLL_INTERVAL).with_compare_contents(true);
                Backend::Poll(new_debouncer_opt(DEBOUNCE, Some(TICK), handler, NoCache, config).map_err(failed)?)
            }
        };
        Ok((FileWatcher { backend, tracked, dirs: HashSet::new() }, rx))
    }

    /// Makes `files` the tracked set. A file tracked before keeps the hash last seen, so a
    /// change that lands while a reload compiles is still reported; a new one is hashed now.
    pub fn track(&mut self, files: &[PathBuf]) -> Result<(), WatchError> {
        let files: Vec<PathBuf> = files.iter().map(|f| absolute(f)).collect();
        for file in &files {
            let Some(dir) = file.parent() else { continue };
            if self.dirs.contains(dir) {
                continue;
            }
            let watched = match &mut self.backend {
                Backend::Events(d) => d.watch(dir, RecursiveMode::NonRecursive),
                Backend::Poll(d) => d.watch(dir, RecursiveMode::NonRecursive),
            };
            watched.map_err(|source| WatchError { what: dir.display().to_string(), source })?;
            self.dirs.insert(dir.to_path_buf());
        }
        let mut tracked = self.tracked.lock().expect("the watcher's lock is never poisoned");
        let mut hashes = HashMap::new();
        for file in files {
            let hash = match tracked.hashes.remove(&file) {
                Some(hash) => hash,
                None => content_hash(&file),
            };
            hashes.insert(file, hash);
        }
        tracked.hashes = hashes;
        Ok(())
    }

    /// The tracked files (absolute paths).
    pub fn tracked(&self) -> Vec<PathBuf> {
        let tracked = self.tracked.lock().expect("the watcher's lock is never poisoned");
        let mut files: Vec<PathBuf> = tracked.hashes.keys().cloned().collect();
        files.sort();
        files
    }

    /// Stops notify's threads and waits for them.
    pub fn stop(self) {
        match self.backend {
            Backend::Events(d) => d.stop(),
            Backend::Poll(d) => d.stop(),
        }
    }
}

impl Tracked {
    /// The tracked files among `paths` whose content differs from the last seen; records the
    /// new hashes. A file that cannot be read (mid-rename, deleted) is not a change yet: the
    /// rename or re-creation that follows is.
    fn changed<'a>(&mut self, paths: impl Iterator<Item = &'a PathBuf>) -> Vec<PathBuf> {
        let mut changed = Vec::new();
        for path in paths {
            let Some(last) = self.hashes.get_mut(path) else { continue };
            let Some(hash) = content_hash(path) else { continue };
            if *last != Some(hash) {
                *last = Some(hash);
                if !changed.contains(path) {
                    changed.push(path.clone());
                }
            }
        }
        changed
    }
}

fn content_hash(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut hasher = DefaultHasher::new();
    hasher.write(&bytes);
    Some(hasher.finish())
}

/// The path as notify reports it: the canonical directory joined with the file name (the file
/// itself may be mid-rename, so only its directory is resolved).
fn absolute(file: &Path) -> PathBuf {
    let name = file.file_name().map(PathBuf::from).unwrap_or_default();
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match dir.canonicalize() {
        Ok(dir) => dir.join(name),
        Err(_) => std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tracked_files_with_new_content_are_changes() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.lua");
        let b = dir.path().join("b.lua");
        std::fs::write(&a, "one").unwrap();
        std::fs::write(&b, "other").unwrap();
        let mut tracked = Tracked::default();
        tracked.hashes.insert(a.clone(), content_hash(&a));
        assert!(tracked.changed([&a, &b].into_iter()).is_empty(), "same bytes, untracked file");
        std::fs::write(&a, "two").unwrap();
        std::fs::write(&b, "changed").unwrap();
        assert_eq!(tracked.changed([&a, &a, &b].into_iter()), vec![a.clone()]);
        assert!(tracked.changed([&a].into_iter()).is_empty(), "the new hash was recorded");
        std::fs::remove_file(&a).unwrap();
        assert!(tracked.changed([&a].into_iter()).is_empty(), "a missing file is not a change yet");
    }

    #[test]
    fn paths_are_absolute_with_a_canonical_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/../x.lua");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(absolute(&file), dir.path().canonicalize().unwrap().join("x.lua"));
    }
}
