//! What every HTTP request passes through: the client's address (the socket's, or a forwarded
//! one only from a configured proxy), the per-address rate limit, and the security headers on
//! every response.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use super::{AppError, WebState};
use crate::limit::{Limit, Limiter, address_key};
use crate::net::AddressBlock;

/// The HTTP side's protections, shared by every request.
#[derive(Debug)]
pub struct Guard {
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<AddressBlock>,
    pub per_address: Limiter<IpAddr>,
    pub per_api_key: Limiter<String>,
    /// Whether the appliance is reached over HTTPS (sets HSTS).
    pub https: bool,
}

impl Guard {
    pub fn new(
        trusted_proxies: Vec<AddressBlock>,
        per_address: Limit,
        per_api_key: Limit,
        https: bool,
    ) -> Self {
        Guard {
            trusted_proxies,
            per_address: Limiter::new(per_address),
            per_api_key: Limiter::new(per_api_key),
            https,
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(ip))
    }

    /// The client's address: the socket's peer, unless that peer is a trusted proxy; then the
    /// nearest address in `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client_address(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.trusted(peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = forwarded_for
            .unwrap_or_default()
            .split(',')
            .filter_map(|hop| hop.trim().parse().ok())
            .collect();
        hops.iter()
            .rev()
            .find(|ip| !self.trusted(**ip))
            .or(hops.first())
            .copied()
            .unwrap_or(peer)
    }
}

/// The client's address, as [`Guard::client_address`] found it.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub IpAddr);

/// A 429 reply that says when to come back.
pub fn too_many(wait: std::time::Duration) -> AppError {
    let seconds = wait.as_secs() + 1;
    let mut error = AppError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests; retry in {seconds} s"),
    );
    error.retry_after = Some(seconds);
    error
}

/// Middleware: finds the client's address, applies its rate limit, adds security headers.
pub async fn protect(State(state): State<WebState>, mut request: Request, next: Next) -> Response {
    let guard = Arc::clone(&state.guard);
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let forwarded = request
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let client = guard.client_address(peer, forwarded);
    request.extensions_mut().insert(ClientAddress(client));
    let mut response = match guard.per_address.check(&address_key(client)) {
        Ok(()) => next.run(request).await,
        Err(wait) => too_many(wait).into_response(),
    };
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers
            .entry(header::HeaderName::from_static(name))
            .or_insert(HeaderValue::from_static(value));
    }
    if guard.https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

/// Sent with every response. Pages load scripts and styles from the appliance only, never
/// inline; nothing may frame them; approval links (which carry a token) are never sent on as a
/// referrer; nothing is cached.
const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=()",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(proxies: &[&str]) -> Guard {
        let proxies = proxies.iter().map(|p| p.parse().unwrap()).collect();
        Guard::new(proxies, Limit::per_minute(60), Limit::per_minute(60), false)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let forwarded = Some("198.51.100.7, 10.0.0.2");
        // No proxy configured: the socket's address, whatever the header says.
        assert_eq!(
            guard(&[]).client_address(ip("203.0.113.1"), forwarded),
            ip("203.0.113.1")
        );
        // From a trusted proxy: the nearest untrusted hop.
        let behind = guard(&["10.0.0.0/8"]);
        assert_eq!(
            behind.client_address(ip("10.0.0.1"), forwarded),
            ip("198.51.100.7")
        );
        // A client that forges the header in front of the proxy gains nothing: the proxy
        // appends the real address, which is the nearest untrusted hop.
        let forged = Some("127.0.0.1, 198.51.100.7");
        assert_eq!(
            behind.client_address(ip("10.0.0.1"), forged),
            ip("198.51.100.7")
        );
        // From an untrusted peer the header is ignored.
        assert_eq!(
            behind.client_address(ip("198.51.100.9"), forwarded),
            ip("198.51.100.9")
        );
        // A trusted peer with no usable header is the client.
        assert_eq!(behind.client_address(ip("10.0.0.1"), None), ip("10.0.0.1"));
    }
}
