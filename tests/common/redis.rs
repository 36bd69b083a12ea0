//! The one way tests and benches start a throwaway `redis-server`: loopback only, no persistence,
//! killed when dropped.
//!
//! Its port is chosen below the kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`),
//! where no port-0 bind and no outgoing connection of this or another test run is ever given a
//! number: after a kill, the port waits for the restart. Two harnesses picking the same port
//! at once is caught, not assumed away: a server that could not bind exits and another port is
//! tried, and every start checks that the server answering is this child (its `process_id`).

use std::{process::Stdio, time::Duration};

use tokio::process::{Child, Command};

/// How long a start may take before the test fails.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// Ports tried before giving up (each collision is another harness's server).
const ATTEMPTS: usize = 20;

/// A running `redis-server`; killed when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port below the ephemeral range; waits until it answers.
    pub async fn start() -> Self {
        for _ in 0..ATTEMPTS {
            let mut server = Self {
                port: unused_port_below_ephemeral(),
                child: None,
            };
            if server.try_start().await {
                return server;
            }
        }
        panic!("redis-server did not start on any of {ATTEMPTS} ports");
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// `redis://127.0.0.1:<port>/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server again on the same port (after [`RedisServer::kill`]).
    pub async fn restart(&mut self) {
        assert!(
            self.try_start().await,
            "redis-server could not listen on port {} again",
            self.port
        );
    }

    /// Kills the server (SIGKILL, as a crash would) and waits until it is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis-server");
        }
    }

    /// `INFO <section>` of this server, as text (`field:value` lines).
    pub async fn info(&self, section: &str) -> redis::RedisResult<String> {
        let client = redis::Client::open(self.url())?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("INFO")
            .arg(section)
            .query_async(&mut connection)
            .await
    }

    /// Spawns the server on `self.port`; true once this child answers there, false if the port
    /// was taken (the child exited, or another server answers there).
    async fn try_start(&mut self) -> bool {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs the Debian package)");
        let pid = child.id().expect("a running child");
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            if child.try_wait().expect("poll redis-server").is_some() {
                return false;
            }
            if let Ok(info) = self.info("server").await {
                // Another harness's server on this port: ours cannot bind, so it is not ours.
                if !info
                    .lines()
                    .any(|l| l.trim() == format!("process_id:{pid}"))
                {
                    child.kill().await.expect("kill redis-server");
                    return false;
                }
                self.child = Some(child);
                return true;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not answer on port {} within {START_DEADLINE:?}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A port free right now, outside the kernel's ephemeral range (and above the well-known ports).
fn unused_port_below_ephemeral() -> u16 {
    let low = ephemeral_range_start();
    assert!(
        low > 11_000,
        "an ephemeral range starting at {low} leaves no room"
    );
    loop {
        let port = rand::random_range(10_000..low);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The first port the kernel hands out for port-0 binds and outgoing connections.
fn ephemeral_range_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}
