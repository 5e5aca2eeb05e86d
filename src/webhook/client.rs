//! One outgoing HTTP exchange (a webhook's POST, or the auditor's GET of a tile): the host is
//! resolved and every address checked against the destination policy; the connection goes to a
//! checked address; HTTPS uses the Mozilla roots; redirects are not followed (a 3xx is an answer
//! like any other); every step has a time limit, and only so much of the answer is read.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use super::ssrf::Policy;

/// How long a connection may take to open (and, for HTTPS, to shake hands).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the whole exchange may take.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(15);
/// How much of a webhook receiver's answer is read (the rest is dropped).
const MAX_RESPONSE: usize = 64 * 1024;

/// Why an exchange (a delivery attempt, a fetch) did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("{0}")]
    Url(String),
    #[error("{host} resolves to {ip}, which webhooks may not reach")]
    Refused { host: String, ip: IpAddr },
    #[error("cannot resolve {0}")]
    Dns(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("timed out")]
    Timeout,
    /// The token could not sign the delivery now (a lost session, a busy token): retried.
    #[error("the token could not sign the delivery: {0}")]
    Unsigned(String),
    /// The token can never sign this delivery (a body over the device's message limit).
    #[error("the token cannot sign this delivery: {0}")]
    Unsignable(String),
}

/// Where a webhook goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

impl Target {
    /// An absolute `http` or `https` URL without credentials.
    pub fn parse(url: &str) -> Result<Self, DeliveryError> {
        let bad = |why: &str| DeliveryError::Url(format!("{url:?}: {why}"));
        if url.len() > 2048 {
            return Err(bad("longer than 2048 bytes"));
        }
        let uri: hyper::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("must be an http or https URL")),
        };
        let authority = uri.authority().ok_or_else(|| bad("has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("must not carry credentials"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        // `http` reads a port it cannot parse as no port: 99999 would become the default port.
        let after_host = authority.as_str().rsplit(']').next().unwrap_or_default();
        if after_host.contains(':') && authority.port_u16().is_none_or(|p| p == 0) {
            return Err(bad("has a port outside 1 to 65535"));
        }
        Ok(Target {
            https,
            host: host.to_ascii_lowercase(),
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            path: uri
                .path_and_query()
                .map_or("/".to_owned(), |p| p.as_str().to_owned()),
        })
    }

    /// The host as the `Host` header writes it.
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The host as written (lower case, an IPv6 address without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The host's addresses, each permitted by `policy`.
    pub async fn resolve(&self, policy: &Policy) -> Result<Vec<SocketAddr>, DeliveryError> {
        let addresses: Vec<SocketAddr> = match self.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, self.port)],
            Err(_) => {
                let lookup = tokio::net::lookup_host((self.host.as_str(), self.port));
                tokio::time::timeout(CONNECT_TIMEOUT, lookup)
                    .await
                    .map_err(|_| DeliveryError::Dns(self.host.clone()))?
                    .map_err(|_| DeliveryError::Dns(self.host.clone()))?
                    .collect()
            }
        };
        if addresses.is_empty() {
            return Err(DeliveryError::Dns(self.host.clone()));
        }
        let ips: Vec<IpAddr> = addresses.iter().map(SocketAddr::ip).collect();
        if let Some(ip) = policy.refused(&ips) {
            return Err(DeliveryError::Refused {
                host: self.host.clone(),
                ip,
            });
        }
        Ok(addresses)
    }
}

fn tls_connector() -> TlsConnector {
    static CONNECTOR: OnceLock<TlsConnector> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let roots = tokio_rustls::rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
            let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| b.with_root_certificates(roots).with_no_client_auth())
                .expect("the ring provider supports the default protocol versions");
            TlsConnector::from(Arc::new(config))
        })
        .clone()
}

/// An answer: its status and the first bytes of its body, up to the limit asked for.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
    /// Whether the body went on past the limit, or broke off.
    pub truncated: bool,
}

/// POSTs `body` (JSON) with `headers` to `target`; returns the response status.
pub async fn post(
    target: &Target,
    policy: &Policy,
    headers: &[(&str, String)],
    body: Bytes,
) -> Result<u16, DeliveryError> {
    let mut request =
        Request::post(target.path.as_str()).header(hyper::header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| DeliveryError::Http(e.to_string()))?;
    Ok(exchange(target, policy, request, MAX_RESPONSE)
        .await?
        .status)
}

/// GETs `target`, reading at most `limit` bytes of the answer's body.
pub async fn get(target: &Target, policy: &Policy, limit: usize) -> Result<Answer, DeliveryError> {
    let request = Request::get(target.path.as_str())
        .body(Full::new(Bytes::new()))
        .map_err(|e| DeliveryError::Http(e.to_string()))?;
    exchange(target, policy, request, limit).await
}

/// Sends `method` to `target` with `headers` and, if given, a JSON `body`; reads at most `limit`
/// bytes of the answer; the whole exchange takes at most `within` (a long poll waits longer
/// than a webhook may).
pub async fn call(
    method: hyper::Method,
    target: &Target,
    policy: &Policy,
    headers: &[(&str, String)],
    body: Option<Bytes>,
    limit: usize,
    within: Duration,
) -> Result<Answer, DeliveryError> {
    let mut request = Request::builder().method(method).uri(target.path.as_str());
    if body.is_some() {
        request = request.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let request = request
        .body(Full::new(body.unwrap_or_default()))
        .map_err(|e| DeliveryError::Http(e.to_string()))?;
    exchange_within(target, policy, request, limit, within).await
}

/// Sends `request` to `target` (adding `Host` and `User-Agent`), within [`TOTAL_TIMEOUT`].
async fn exchange(
    target: &Target,
    policy: &Policy,
    request: Request<Full<Bytes>>,
    limit: usize,
) -> Result<Answer, DeliveryError> {
    exchange_within(target, policy, request, limit, TOTAL_TIMEOUT).await
}

async fn exchange_within(
    target: &Target,
    policy: &Policy,
    mut request: Request<Full<Bytes>>,
    limit: usize,
    within: Duration,
) -> Result<Answer, DeliveryError> {
    let headers = request.headers_mut();
    let host = hyper::header::HeaderValue::from_str(&target.host_header())
        .map_err(|e| DeliveryError::Url(e.to_string()))?;
    headers.insert(hyper::header::HOST, host);
    headers.insert(
        hyper::header::USER_AGENT,
        hyper::header::HeaderValue::from_static(concat!("sshsign/", env!("CARGO_PKG_VERSION"))),
    );
    tokio::time::timeout(within, connect_and_send(target, policy, request, limit))
        .await
        .map_err(|_| DeliveryError::Timeout)?
}

async fn connect_and_send(
    target: &Target,
    policy: &Policy,
    request: Request<Full<Bytes>>,
    limit: usize,
) -> Result<Answer, DeliveryError> {
    let addresses = target.resolve(policy).await?;
    let mut last_error = DeliveryError::Connect("no address".into());
    let mut stream = None;
    for address in addresses {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(s)) => {
                stream = Some(s);
                break;
            }
            Ok(Err(e)) => last_error = DeliveryError::Connect(e.to_string()),
            Err(_) => last_error = DeliveryError::Timeout,
        }
    }
    let stream = stream.ok_or(last_error)?;
    if target.https {
        let name = ServerName::try_from(target.host.clone())
            .map_err(|e| DeliveryError::Tls(e.to_string()))?;
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, tls_connector().connect(name, stream))
            .await
            .map_err(|_| DeliveryError::Timeout)?
            .map_err(|e| DeliveryError::Tls(e.to_string()))?;
        send(TokioIo::new(tls), request, limit).await
    } else {
        send(TokioIo::new(stream), request, limit).await
    }
}

async fn send<T>(
    io: TokioIo<T>,
    request: Request<Full<Bytes>>,
    limit: usize,
) -> Result<Answer, DeliveryError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let http = |e: hyper::Error| DeliveryError::Http(e.to_string());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(http)?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(http)?;
    let status = response.status().as_u16();
    // Read up to the limit (so the other side sees a clean exchange); drop the rest.
    let mut body = response.into_body();
    let mut read = Vec::new();
    let mut truncated = false;
    while let Some(frame) = body.frame().await {
        // A body cut short is marked as such; a webhook's status stands regardless.
        let Ok(frame) = frame else {
            truncated = true;
            break;
        };
        if let Some(data) = frame.data_ref() {
            let room = limit - read.len();
            read.extend_from_slice(&data[..data.len().min(room)]);
            if data.len() > room {
                truncated = true;
                break;
            }
        }
    }
    driver.abort();
    Ok(Answer {
        status,
        body: Bytes::from(read),
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_strictly() {
        let t = Target::parse("https://hooks.example.com/services/T0/B0/x?y=1").unwrap();
        assert_eq!(
            t,
            Target {
                https: true,
                host: "hooks.example.com".into(),
                port: 443,
                path: "/services/T0/B0/x?y=1".into()
            }
        );
        assert_eq!(t.host_header(), "hooks.example.com");
        let v6 = Target::parse("http://[2001:db8::1]:8080").unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.port, v6.path.as_str()),
            ("2001:db8::1", 8080, "/")
        );
        assert_eq!(v6.host_header(), "[2001:db8::1]:8080");
        for bad in [
            "ftp://example.com/",
            "example.com/hook",
            "https://user:pw@example.com/",
            "http:///nohost",
            "http://example.com:99999/",
            "http://example.com:0/",
            "http://[2001:db8::1]:65536/",
            "http://example.com:/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn internal_destinations_are_refused_before_connecting() {
        let policy = Policy::default();
        for url in [
            "http://127.0.0.1:9/",
            "http://[::1]/",
            "http://169.254.169.254/latest",
            "http://localhost/",
        ] {
            let target = Target::parse(url).unwrap();
            let refused = post(&target, &policy, &[], Bytes::new()).await;
            assert!(
                matches!(refused, Err(DeliveryError::Refused { .. })),
                "{url}: {refused:?}"
            );
        }
    }
}
