//! TLS on the gRPC port with rustls, optionally requiring client certificates (mTLS).
//!
//! [`load`] builds a rustls `ServerConfig` from `TLS_CERT_FILE`, `TLS_KEY_FILE` and, for mTLS,
//! `TLS_CLIENT_CA_FILE`. [`incoming`] accepts TCP connections (within `GRPC_MAX_CONNECTIONS`, see
//! [`crate::transport`]) and runs each handshake in its own task (a slow client never holds up
//! the others; `GRPC_HANDSHAKE_TIMEOUT` bounds it) with the config in use at that moment, so a
//! reload (see [`crate::reload`]) applies to new connections while established ones carry on.
//! Accepted streams are rustls `TlsStream`s, for which tonic records the verified peer
//! certificates in every request: that is how a client certificate can name the caller.

use std::{
    convert::Infallible,
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        RootCertStore, ServerConfig,
        crypto::aws_lc_rs,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
        server::WebPkiClientVerifier,
    },
    server::TlsStream,
};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tracing::debug;

use crate::{
    reload::{Attempt, FileReader, Loaded, Swap, watch_files},
    transport::{Connections, Guarded, connection::admit_next},
};

/// The PEM files TLS is configured from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, leaf first.
    pub cert: PathBuf,
    /// The server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates client certificates must chain to; set, a client certificate is required.
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file holds no usable PEM item of the expected kind.
    #[error("{path}: {problem}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was expected.
        problem: String,
    },
    /// rustls refused the combination (e.g. the key does not match the certificate).
    #[error("unusable TLS configuration: {0}")]
    Rustls(String),
}

/// Reads the files and builds the server's TLS configuration.
pub fn load(files: &TlsFiles) -> Attempt<ServerConfig, TlsError> {
    let mut reader = FileReader::default();
    let result = build(files, &mut reader);
    Attempt {
        fingerprint: reader.fingerprint(),
        result,
    }
}

fn build(files: &TlsFiles, reader: &mut FileReader) -> Result<ServerConfig, TlsError> {
    let certs = read_certs(reader, &files.cert)?;
    let key_pem = read(reader, &files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::Pem {
        path: files.key.clone(),
        problem: "no PEM private key (PKCS#8, PKCS#1 or SEC1) found".into(),
    })?;
    let provider = Arc::new(aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(reader, path)? {
                roots.add(cert).map_err(|e| TlsError::Pem {
                    path: path.to_owned(),
                    problem: format!("not a usable CA certificate: {e}"),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    // h2 for gRPC; http/1.1 for gRPC-Web callers that do not speak HTTP/2.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn read(reader: &mut FileReader, path: &Path) -> Result<Vec<u8>, TlsError> {
    reader.read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_certs(
    reader: &mut FileReader,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(reader, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_default();
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            problem: "no PEM certificate found".into(),
        });
    }
    Ok(certs)
}

/// Accepts connections on `listener` that `connections` has room for and yields those whose TLS
/// handshake succeeded with the configuration in `config` at accept time; a handshake that does
/// not finish within the connection's handshake deadline fails on its next read. Stops
/// accepting once the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    connections: Connections,
    config: Arc<Swap<ServerConfig>>,
) -> impl Stream<Item = io::Result<TlsStream<Guarded<TcpStream>>>> {
    let (ready_tx, ready_rx) = mpsc::channel(64);
    crate::task::spawn(async move {
        loop {
            let tcp = tokio::select! {
                tcp = admit_next(&listener, &connections) => tcp,
                () = ready_tx.closed() => return,
            };
            let peer = tcp.get_ref().peer_addr().ok();
            let acceptor = TlsAcceptor::from(config.get());
            let ready_tx = ready_tx.clone();
            crate::task::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(stream) => {
                        let _ = ready_tx.send(Ok(stream)).await;
                    }
                    Err(error) => debug!(?peer, %error, "TLS handshake failed"),
                }
            });
        }
    });
    ReceiverStream::new(ready_rx)
}

/// Puts the TLS configuration read at start in use and reloads it when a file changes or on
/// `SIGHUP`, until `stop` turns true. New connections use the latest good configuration.
pub fn start(
    loaded: &Loaded<TlsFiles, Arc<ServerConfig>>,
    poll_interval: Duration,
    stop: watch::Receiver<bool>,
) -> Arc<Swap<ServerConfig>> {
    let current = Arc::new(Swap::from_arc(Arc::clone(&loaded.value)));
    let (files, swap) = (loaded.source.clone(), Arc::clone(&current));
    crate::task::spawn(watch_files(
        "TLS files",
        poll_interval,
        stop,
        loaded.fingerprint,
        move || load(&files),
        move |config| {
            swap.set(config);
            Ok::<(), Infallible>(())
        },
    ));
    current
}
