//! Configuration that changes while the server runs: the callers file and the TLS files.
//!
//! A [`Swap`] holds the value in use; readers take a cheap `Arc` snapshot, so a swap never
//! waits for a request and a request never sees half a configuration. [`watch_files`] re-reads
//! the files on `SIGHUP` and every poll interval; a [`Fingerprint`] of every byte read decides
//! whether anything changed (Kubernetes swaps mounted Secrets by symlink, which an mtime check
//! can miss). A broken file keeps the previous value in use and is reported once per change.

use std::{
    fmt::Display,
    path::Path,
    sync::{Arc, RwLock},
    time::Duration,
};

use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{error, info};

use crate::shutdown::stopped;

/// A value replaced as a whole while readers keep using the snapshot they took.
#[derive(Debug)]
pub struct Swap<T>(RwLock<Arc<T>>);

impl<T> Swap<T> {
    /// Starts with `value`.
    pub fn new(value: T) -> Self {
        Self(RwLock::new(Arc::new(value)))
    }

    /// Starts with a value already shared.
    pub fn from_arc(value: Arc<T>) -> Self {
        Self(RwLock::new(value))
    }

    /// The value in use now.
    pub fn get(&self) -> Arc<T> {
        // Only `set` writes, and it cannot panic while holding the lock, so a poisoned lock
        // still holds a whole value.
        Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Puts `value` in use for every later `get`.
    pub fn set(&self, value: T) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(value);
    }
}

/// A digest of the names and contents of the files one load read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint([u8; 32]);

/// Reads files and fingerprints everything it read, also what failed to read.
#[derive(Default)]
pub struct FileReader(Sha256);

impl FileReader {
    /// Reads `path`, adding its name and contents (or the failure) to the fingerprint.
    pub fn read(&mut self, path: &Path) -> std::io::Result<Vec<u8>> {
        let result = std::fs::read(path);
        self.0.update(path.as_os_str().as_encoded_bytes());
        match &result {
            Ok(bytes) => {
                self.0.update((bytes.len() as u64).to_le_bytes());
                self.0.update(bytes);
            }
            Err(error) => self.0.update(format!("\0error: {:?}", error.kind())),
        }
        result
    }

    /// The fingerprint of everything read so far.
    pub fn fingerprint(self) -> Fingerprint {
        Fingerprint(self.0.finalize().into())
    }
}

/// A configuration read from files at start, with what is needed to reload it.
#[derive(Debug, Clone)]
pub struct Loaded<S, T> {
    /// The files it came from.
    pub source: S,
    /// The value read at start.
    pub value: T,
    /// What was read, to notice changes.
    pub fingerprint: Fingerprint,
}

/// The outcome of one load: what was read, and the value or why it is unusable.
pub struct Attempt<T, E> {
    /// Covers every file the load read, even when it failed.
    pub fingerprint: Fingerprint,
    /// The loaded value.
    pub result: Result<T, E>,
}

/// Re-runs `load` on `SIGHUP` and every `interval` until `stop` turns true, and hands each new
/// good value to `apply`. `current` is the fingerprint of the value already in use. A load (or
/// apply) that fails is logged once (until the files change again) and changes nothing.
/// `SIGHUP` reloads even when nothing seems changed.
pub async fn watch_files<T, E: Display, F: Display>(
    what: &'static str,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    mut current: Fingerprint,
    mut load: impl FnMut() -> Attempt<T, E>,
    mut apply: impl FnMut(T) -> Result<(), F>,
) {
    let mut hangup = hangup_signal();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        let forced = tokio::select! {
            () = stopped(&mut stop) => return,
            _ = ticks.tick() => false,
            () = next_hangup(&mut hangup) => true,
        };
        let attempt = load();
        if attempt.fingerprint == current && !forced {
            continue;
        }
        current = attempt.fingerprint;
        match attempt
            .result
            .map_err(|e| e.to_string())
            .and_then(|value| apply(value).map_err(|e| e.to_string()))
        {
            Ok(()) => info!(what, forced, "reloaded"),
            Err(problem) => {
                error!(
                    what,
                    "reload failed, keeping the previous configuration: {problem}"
                )
            }
        }
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(unix)]
async fn next_hangup(hangup: &mut Hangup) {
    let received = match hangup {
        Some(signal) => signal.recv().await.is_some(),
        None => false,
    };
    if !received {
        std::future::pending::<()>().await;
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) {
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    // The `#[cfg(not(unix))]` next_hangup is not compiled on Unix, where the tests run: its
    // mutant is excluded in .cargo/mutants.toml (the Unix one is caught).
    use super::*;

    #[test]
    fn a_swap_hands_out_the_latest_value_and_keeps_old_snapshots_whole() {
        let swap = Swap::new(1);
        let before = swap.get();
        swap.set(2);
        assert_eq!((*before, *swap.get()), (1, 2));
    }

    #[test]
    fn fingerprints_follow_contents_and_failures() {
        let dir = std::env::temp_dir().join(format!("itnio-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("a");
        let print = || {
            let mut reader = FileReader::default();
            let _ = reader.read(&file);
            reader.fingerprint()
        };
        let missing = print();
        std::fs::write(&file, "one").expect("write");
        let one = print();
        assert_eq!(one, print());
        std::fs::write(&file, "two").expect("write");
        let two = print();
        std::fs::remove_dir_all(&dir).ok();
        assert_ne!(missing, one);
        assert_ne!(one, two);
        assert_ne!(missing, Fingerprint::default());
    }

    #[tokio::test(start_paused = true)]
    async fn only_changed_good_files_are_applied() {
        use std::sync::Mutex;
        let interval = Duration::from_millis(100);
        // The "files": a fingerprint seed and what loading them gives.
        let files = Arc::new(Mutex::new((1_u8, Ok::<u32, String>(1))));
        let applied = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(watch_files(
            "test files",
            interval,
            stop_rx,
            Fingerprint([1; 32]),
            {
                let files = Arc::clone(&files);
                move || {
                    let (seed, result) = files.lock().expect("lock").clone();
                    Attempt {
                        fingerprint: Fingerprint([seed; 32]),
                        result,
                    }
                }
            },
            {
                let applied = Arc::clone(&applied);
                move |value| {
                    applied.lock().expect("lock").push(value);
                    Ok::<(), String>(())
                }
            },
        ));
        let set = |seed, result| *files.lock().expect("lock") = (seed, result);
        let applied_now = || applied.lock().expect("lock").clone();
        // Ticks fall on multiples of 100 ms; the test looks in between.
        tokio::time::sleep(interval * 3 + interval / 2).await;
        assert_eq!(
            applied_now(),
            Vec::<u32>::new(),
            "unchanged files are not re-applied"
        );
        set(2, Ok(2));
        tokio::time::sleep(interval).await;
        assert_eq!(applied_now(), [2]);
        set(3, Err("broken".into()));
        tokio::time::sleep(interval * 3).await;
        assert_eq!(applied_now(), [2], "a broken file changes nothing");
        set(4, Ok(4));
        tokio::time::sleep(interval).await;
        assert_eq!(applied_now(), [2, 4]);
        stop_tx.send_replace(true);
        task.await.expect("the watch ends on stop");
    }
}
