//! Ports that must be closed, proven in ways no other test can falsify.
//!
//! "Connecting to the address fails" proves nothing once the port is free: any test of this or
//! another run may bind the same number in between (seen in CI: a released admin port "still
//! open" because someone else listened there). These helpers name the socket, not the number:
//! a listening socket is known by its inode and is closed when no LISTEN entry of the kernel's
//! socket tables (`/proc/net/tcp`, `/proc/net/tcp6`) carries that inode any more. Socket inodes
//! come from a counter and are not reused while a test runs, so no other socket can stand in.

use std::{net::SocketAddr, os::fd::AsRawFd};

/// The inode of the socket `socket` (a listener, a stream) of this process.
pub fn socket_inode(socket: &impl AsRawFd) -> u64 {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd()))
        .expect("the socket's /proc/self/fd entry");
    let link = link.to_string_lossy();
    link.strip_prefix("socket:[")
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inode| inode.parse().ok())
        .unwrap_or_else(|| panic!("not a socket: {link}"))
}

/// Whether a TCP socket with `inode` is listening, in any process of this network namespace.
pub fn is_listening(inode: u64) -> bool {
    const LISTEN: &str = "0A";
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
        text.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(3) == Some(&LISTEN)
                && fields.get(9).and_then(|i| i.parse().ok()) == Some(inode)
        })
    })
}

/// A loopback address that refuses connections for as long as the returned socket lives.
///
/// The socket is bound without `SO_REUSEADDR` and never listens: the kernel answers a connection
/// attempt with a reset, and no other socket (of any process) can bind the port meanwhile.
/// Binding, dropping and reusing a port-0 number instead races with every other test.
pub fn refusing_addr() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind a loopback port");
    let addr = socket.local_addr().expect("its address");
    (socket, addr)
}
