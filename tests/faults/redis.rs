//! A throwaway `redis-server` on a free loopback port (no persistence), and the service binary
//! started as a separate process, as replicas run in production.

use std::{net::SocketAddr, process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
};

/// A running `redis-server`; killed when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it answers PING.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut server = Self { port, child: None };
        server.restart().await;
        server
    }

    /// `redis://127.0.0.1:<port>/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server (again) on the same port.
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs the Debian package)");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.answers_ping().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server (SIGKILL, as a crash would) and waits until it is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis-server");
        }
    }

    async fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut reply = [0; 7];
        stream.write_all(b"PING\r\n").await.is_ok()
            && stream.read_exact(&mut reply).await.is_ok()
            && &reply == b"+PONG\r\n"
    }
}

/// The service binary running as its own process; killed when dropped.
pub struct Replica {
    pub addr: SocketAddr,
    _child: Child,
}

impl Replica {
    /// Starts the binary against ITNIO at `base_url`, sharing state in `redis_url`, with the
    /// send guard in dry-run: these replicas resend to one number on purpose.
    pub async fn start(base_url: &str, redis_url: &str) -> Self {
        Self::start_with(base_url, redis_url, &[("GUARD_DRY_RUN", "true")]).await
    }

    /// Like [`Replica::start`], with the send guard as `envs` set it.
    pub async fn start_with(base_url: &str, redis_url: &str, envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_itnio-otp-grpc"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GRPC_LISTEN_ADDR", "127.0.0.1:0")
            .env("METRICS_LISTEN_ADDR", "127.0.0.1:0")
            .env("ALLOW_UNAUTHENTICATED", "true")
            .env("ITNIO_BASE_URL", base_url)
            .env("ITNIO_API_KEY", crate::common::API_KEY)
            .env("ITNIO_API_SECRET", crate::common::API_SECRET)
            .env("ITNIO_TIMEOUT", "5s")
            .env("REDIS_URL", redis_url)
            // The sandbox behind the proxy is called as ITNIO: its test numbers apply.
            .env("ALLOW_TEST_NUMBERS", "true")
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the service binary");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let addr = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.expect("read stderr") {
                if line.contains("gRPC server listening") {
                    let addr = line.split("addr=").nth(1).expect("addr field");
                    let addr = addr.split_whitespace().next().expect("addr value");
                    return addr.parse::<SocketAddr>().expect("socket address");
                }
            }
            panic!("the service exited before listening");
        })
        .await
        .expect("the service starts listening");
        // Keep draining its log so the pipe never fills.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            addr,
            _child: child,
        }
    }
}
