//! Where a request comes from: the `Host` it was sent to (an allow-list,
//! against DNS rebinding: a page of another site whose name an attacker
//! points at this collector would otherwise read it), and, for writes
//! made with the sign-in cookie, the site that made the browser send them
//! (cross-site request forgery: SameSite does not separate ports or
//! sibling subdomains, e.g. a Grafana beside Sobre).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

/// The host names this collector answers to.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    names: Arc<BTreeSet<String>>,
}

impl AllowedHosts {
    /// `localhost`, this machine's name, and the configured ones; any IP
    /// address is allowed too (a page cannot rebind a literal address).
    pub fn new(configured: &[String]) -> Self {
        let mut names: BTreeSet<String> =
            configured.iter().map(|n| n.to_ascii_lowercase()).collect();
        names.insert("localhost".into());
        if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            let h = h.trim().to_ascii_lowercase();
            if !h.is_empty() {
                names.insert(h);
            }
        }
        AllowedHosts {
            names: Arc::new(names),
        }
    }

    /// Whether a `Host` header value (name or address, with or without a
    /// port) is one of ours.
    pub fn allows(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<IpAddr>().is_ok() || self.names.contains(&name) || name.ends_with(".localhost")
    }
}

/// The name part of a `Host` value: `[::1]:8080` → `[::1]`, `a.fr:80` →
/// `a.fr`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

/// Middleware: a request for a `Host` that is not ours gets 421 and a
/// JSON error naming the setting.
pub async fn host_guard(State(allowed): State<AllowedHosts>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or("\u{fffd}").to_owned());
    match host {
        Some(h) if !allowed.allows(&h) => {
            tracing::warn!(host = %h.chars().take(80).collect::<String>(), "request for another host refused");
            super::ApiError(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this collector does not answer to the host name {:?}; add it to http.allowed_hosts if it is one of its names",
                    h.chars().take(80).collect::<String>()
                ),
            )
            .into_response()
        }
        _ => next.run(req).await,
    }
}

/// Why a browser request is refused as coming from another site, if it
/// is. Browsers say where a request comes from: `Sec-Fetch-Site` (must
/// be `same-origin`) and `Origin` (must be this collector, as the `Host`
/// it was asked by). A request with neither is not from a browser's page
/// on another site (every current browser sends `Origin` on a POST), so
/// it passes: scripts and curl are for the token check to judge.
pub fn cross_site(h: &HeaderMap) -> Option<String> {
    let get = |n: header::HeaderName| h.get(n).map(|v| v.to_str().unwrap_or("?"));
    if let Some(site) = get(header::HeaderName::from_static("sec-fetch-site"))
        && site != "same-origin"
    {
        return Some(format!("Sec-Fetch-Site: {site}"));
    }
    if let Some(origin) = get(header::ORIGIN) {
        let host = get(header::HOST).unwrap_or("");
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if host.is_empty() || authority != Some(host) {
            return Some(format!("Origin: {origin}, Host: {host}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebound_name_is_refused_and_our_names_and_addresses_pass() {
        let a = AllowedHosts::new(&["sobre.ville.fr".into()]);
        for ok in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "[::1]",
            "10.1.2.3",
            "localhost:8080",
            "LOCALHOST",
            "sobre.ville.fr",
            "Sobre.Ville.FR:443",
            "app.localhost:3000",
        ] {
            assert!(a.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "sobre.ville.fr.evil.example",
            "localhost.evil.example",
            "",
        ] {
            assert!(!a.allows(bad), "{bad}");
        }
    }
}
