//! The one way tests and benches start the real `itnio-otp-grpc` binary (or another build of it).
//!
//! The child starts from an empty environment plus [`PASSED_THROUGH`]: nothing a developer's shell
//! exports (`ITNIO_*`, `REDIS_URL`, `CALLERS_FILE`, `http_proxy`, `SSL_CERT_FILE`, …) reaches it,
//! so a test sees exactly the variables it sets. Listeners default to port 0 and the address is
//! read from the log line that announces it. Every stderr line is kept; waits are event-driven
//! (woken by each new line) with a deadline that fails with the log so far.

use std::{
    ffi::OsStr,
    net::SocketAddr,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, ChildStderr},
    sync::Notify,
    task::JoinHandle,
};
use tonic::transport::Channel;

/// The path of this build's binary.
pub const BINARY: &str = env!("CARGO_BIN_EXE_itnio-otp-grpc");

/// How long a wait for a log line or an exit may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// The only variables of this process a child inherits: how to find programs, and how to debug
/// or measure the child (backtraces, coverage). Everything else is cleared.
pub const PASSED_THROUGH: [&str; 3] = ["PATH", "RUST_BACKTRACE", "LLVM_PROFILE_FILE"];

/// This build's binary with a clean environment, gRPC and metrics on port 0, `RUST_LOG=info`,
/// then `envs` (which may override any of those).
pub fn command(envs: &[(&str, &str)]) -> std::process::Command {
    command_for(BINARY, envs)
}

/// Like [`command`], for another build of the binary (`FACADE_BENCH_BIN`, `BEFORE_BIN`).
pub fn command_for(program: impl AsRef<OsStr>, envs: &[(&str, &str)]) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    command.env_clear();
    for name in PASSED_THROUGH {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
        .env("GRPC_LISTEN_ADDR", "127.0.0.1:0")
        .env("METRICS_LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .envs(envs.iter().copied());
    command
}

/// The stderr lines of a child so far, and a wake-up for each new one.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    grew: Notify,
}

impl Log {
    fn lines(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.lines.lock().expect("log lines")
    }

    /// The first line at or after `from` for which `matches` holds, waiting for new lines until
    /// `WAIT` has passed (then fails, showing the log).
    async fn first(&self, from: usize, what: &str, matches: impl Fn(&str) -> bool) -> usize {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            // Registered before looking, so a line pushed in between still wakes this wait.
            let grew = self.grew.notified();
            tokio::pin!(grew);
            grew.as_mut().enable();
            if let Some(index) = self.lines().iter().skip(from).position(|l| matches(l)) {
                return from + index;
            }
            if tokio::time::timeout_at(deadline, grew).await.is_err() {
                panic!("no log line {what} within {WAIT:?} in {:#?}", self.lines());
            }
        }
    }
}

/// A running child: killed when dropped.
pub struct Binary {
    child: Child,
    log: Arc<Log>,
    reader: Option<JoinHandle<()>>,
}

impl Binary {
    /// Starts this build's binary with [`command`]`(envs)`.
    pub fn start(envs: &[(&str, &str)]) -> Self {
        Self::spawn(command(envs))
    }

    /// Starts `command` (made with [`command`] or [`command_for`], perhaps with arguments added)
    /// with stdout discarded and every stderr line kept. Needs a tokio runtime.
    pub fn spawn(command: std::process::Command) -> Self {
        Self::spawn_with(command, false)
    }

    /// Like [`Binary::spawn`], also copying each stderr line to this process's stderr (benches:
    /// the child's warnings stay visible).
    pub fn spawn_echoing(command: std::process::Command) -> Self {
        Self::spawn_with(command, true)
    }

    fn spawn_with(command: std::process::Command, echo: bool) -> Self {
        let mut command = tokio::process::Command::from(command);
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the itnio-otp-grpc binary");
        let log = Arc::new(Log::default());
        let stderr = child.stderr.take().expect("stderr is piped");
        let reader = tokio::spawn(keep_lines(stderr, Arc::clone(&log), echo));
        Self {
            child,
            log,
            reader: Some(reader),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the child has not been waited for")
    }

    /// Every stderr line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lines().clone()
    }

    /// How many stderr lines there are so far: a mark for [`Binary::wait_for_since`].
    pub fn lines_so_far(&self) -> usize {
        self.log.lines().len()
    }

    /// The first stderr line containing `needle` (waiting up to [`WAIT`] for it).
    pub async fn wait_for(&self, needle: &str) -> String {
        self.wait_for_since(0, needle).await
    }

    /// The first line containing `needle` among those after the first `mark` lines.
    pub async fn wait_for_since(&self, mark: usize, needle: &str) -> String {
        let what = format!("containing {needle:?} after line {mark}");
        let index = self.log.first(mark, &what, |l| l.contains(needle)).await;
        self.log.lines()[index].clone()
    }

    /// Every line before the first one containing `needle` (which must come within [`WAIT`]).
    pub async fn lines_before(&self, needle: &str) -> Vec<String> {
        let what = format!("containing {needle:?}");
        let index = self.log.first(0, &what, |l| l.contains(needle)).await;
        self.log.lines()[..index].to_vec()
    }

    /// The `addr` field of the first line containing `needle` (text or JSON logs).
    pub async fn addr(&self, needle: &str) -> SocketAddr {
        addr_in(&self.wait_for(needle).await)
    }

    /// A channel to the gRPC port, once the binary has announced it.
    pub async fn grpc(&self) -> Channel {
        super::connect(self.addr("gRPC server listening").await).await
    }

    /// Sends `signal` (`"TERM"`, `"HUP"`, `"KILL"`) to the child.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Waits (up to [`WAIT`]) for the child to exit; its whole log is read by then.
    pub async fn exit(&mut self) -> ExitStatus {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the binary did not exit within {WAIT:?}"))
            .expect("wait for the binary");
        if let Some(reader) = self.reader.take() {
            tokio::time::timeout(WAIT, reader)
                .await
                .expect("stderr closes when the binary exits")
                .expect("log reader");
        }
        status
    }

    /// [`Binary::sigterm`], then [`Binary::exit`].
    pub async fn terminate(&mut self) -> ExitStatus {
        self.sigterm();
        self.exit().await
    }
}

/// Reads `stderr` line by line into `log` (and to this process's stderr if `echo`) until it
/// closes.
async fn keep_lines(stderr: ChildStderr, log: Arc<Log>, echo: bool) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if echo {
            eprintln!("{line}");
        }
        log.lines().push(line);
        log.grew.notify_waiters();
    }
}

/// The socket address after `addr=` (text logs) or in `"addr":"…"` (JSON logs) in `line`.
pub fn addr_in(line: &str) -> SocketAddr {
    let rest = line
        .split("addr=")
        .nth(1)
        .or_else(|| line.split("\"addr\":\"").nth(1))
        .unwrap_or_else(|| panic!("no addr in {line:?}"));
    rest.split(|c: char| c.is_whitespace() || c == '"')
        .next()
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no socket address in {line:?}"))
}
