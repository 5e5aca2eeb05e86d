//! The HTTP listener: TLS (rustls) when certificate files are configured, plain HTTP otherwise;
//! HTTP/1.1 with a header-read timeout, a header size limit and caps on open connections, overall
//! and per source address, so a silent or trickling client is dropped and one source cannot hold
//! the appliance's sockets.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::net::AddressBlock;
use crate::net::slots::Slots;

/// The largest request head (request line and headers) read, in bytes.
pub const MAX_HEAD: usize = 32 * 1024;
/// Connections open at once; the next waits in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 1024;
/// Connections open at once from one source (an IPv4 address or an IPv6 /64); the next is
/// closed at once. A browser opens about six; the rest is room for an office behind one NAT.
/// Trusted proxies are not counted per source: they carry everyone's connections.
pub const MAX_CONNECTIONS_PER_SOURCE: usize = 64;
/// How long open connections get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS setup: {0}")]
    Config(String),
}

/// A TLS acceptor from PEM certificate-chain and private-key files.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let file_error = |path: &Path, reason: String| TlsError::File {
        path: path.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_error(cert, "holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e.to_string()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open requests finish. A
/// client gets `header_timeout` to send a request's headers (and, with TLS, to finish its
/// handshake) before its connection is dropped. A connection from a source that already holds
/// [`MAX_CONNECTIONS_PER_SOURCE`] is closed at once, unless it comes from one of
/// `trusted_proxies`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    header_timeout: Duration,
    trusted_proxies: Vec<AddressBlock>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let sources = Slots::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_SOURCE);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_header_size(MAX_HEAD)
        .max_headers(64);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = crate::net::accept(&listener, "HTTP") => accepted,
            () = &mut shutdown => break,
        };
        let source_slot = if trusted_proxies.iter().any(|p| p.contains(peer.ip())) {
            None
        } else {
            match sources.admit(peer.ip()) {
                Ok(slot) => Some(slot),
                Err(full) => {
                    // Not a warning each: a flood of refusals would flood the log.
                    tracing::debug!(%peer, %full, "HTTP connection refused");
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
        let http = http.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slots = (slot, source_slot);
            let result = match tls {
                Some(tls) => match tokio::time::timeout(header_timeout, tls.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let connection = http.serve_connection(TokioIo::new(stream), service);
                        watcher.watch(connection).await
                    }
                    Ok(Err(error)) => return log_dropped(peer, &error),
                    Err(_) => return log_dropped(peer, &"TLS handshake timed out"),
                },
                None => {
                    let connection = http.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(connection).await
                }
            };
            if let Err(error) = result {
                log_dropped(peer, &error);
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after {DRAIN:?}; closing them");
    }
    Ok(())
}

fn log_dropped(peer: SocketAddr, error: &dyn std::fmt::Display) {
    tracing::debug!(%peer, %error, "HTTP connection dropped");
}
