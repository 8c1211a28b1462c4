//! Failed sign-ins per source: after `listeners.failed_auth_burst`
//! failures an address is refused, then allowed one more attempt every
//! `listeners.failed_auth_refill_s` (a token bucket, `ingest::rate`, per
//! address; IPv6 per /64, what one host is usually given). One instance
//! serves the MQTT guard (CONNECT), gRPC `Enrol` and the console's login.
//! Keys and tokens are 256 bits: this is not what stops guessing, it
//! stops a stranger from making the collector check, query and log
//! without end.

use super::log::logs;
use crate::ingest::rate::RateLimit;
use crate::metrics::Metrics;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Failed sign-ins by source address.
#[derive(Debug)]
pub struct AuthFailures {
    rate: RateLimit,
    metrics: Arc<Metrics>,
}

/// A source refused for its failures, until `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed sign-ins from this address; retry in {} s", retry_after.as_secs().max(1))]
pub struct Blocked {
    pub retry_after: Duration,
}

/// The bucket's key: the address, an IPv6 one by its /64.
fn source(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

impl AuthFailures {
    pub fn new(burst: u32, refill: Duration, metrics: Arc<Metrics>) -> AuthFailures {
        AuthFailures {
            rate: RateLimit::new(1.0 / refill.as_secs_f64().max(1e-3), f64::from(burst)),
            metrics,
        }
    }

    /// Whether `ip` may try to sign in on `listener` now. A refusal is
    /// counted (`sobre_auth_blocked_total{listener}`) and logged at most
    /// once per period.
    pub fn check(&self, ip: IpAddr, listener: &'static str) -> Result<(), Blocked> {
        let now = Instant::now();
        let Err(retry_after) = self.rate.peek(&source(ip), now) else {
            return Ok(());
        };
        self.metrics.auth_blocked(listener);
        if let Some(more) = logs().due((listener, "auth_blocked"), now) {
            tracing::warn!(
                listener,
                source = %source(ip),
                reason = "auth_blocked",
                "{listener}: a source refused after too many failed sign-ins{more}"
            );
        }
        Err(Blocked { retry_after })
    }

    /// A failed sign-in from `ip` on `listener`
    /// (`sobre_auth_failures_total{listener}`).
    pub fn record(&self, ip: IpAddr, listener: &'static str) {
        self.metrics.auth_failed(listener);
        let _ = self.rate.take(&source(ip), Instant::now());
    }
}

/// The sign-in attempt of one HTTP request: the limiter (an
/// `axum::Extension` set by `lib.rs`) and the peer's address (set by
/// `http::serve`). Without either (a router in a unit test), nothing is
/// limited.
#[derive(Debug, Clone)]
pub struct SignIn {
    gate: Option<(Arc<AuthFailures>, IpAddr)>,
}

impl SignIn {
    /// Whether this source may try now (`AuthFailures::check`).
    pub fn check(&self) -> Result<(), Blocked> {
        match &self.gate {
            Some((f, ip)) => f.check(*ip, "http"),
            None => Ok(()),
        }
    }

    /// This attempt failed.
    pub fn failed(&self) {
        if let Some((f, ip)) = &self.gate {
            f.record(*ip, "http");
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for SignIn {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        use axum::extract::ConnectInfo;
        let f = parts.extensions.get::<Arc<AuthFailures>>().cloned();
        let ip = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(SignIn { gate: f.zip(ip) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_refused_after_its_burst_of_failures_and_others_are_not() {
        let metrics = Arc::new(Metrics::default());
        let f = AuthFailures::new(3, Duration::from_secs(60), metrics.clone());
        let bad: IpAddr = "192.0.2.7".parse().expect("ip");
        let good: IpAddr = "192.0.2.8".parse().expect("ip");
        for _ in 0..3 {
            assert_eq!(f.check(bad, "http"), Ok(()));
            f.record(bad, "http");
        }
        let b = f.check(bad, "http").expect_err("blocked after 3");
        assert!(b.retry_after > Duration::from_secs(50), "{b:?}");
        assert_eq!(f.check(good, "http"), Ok(()), "another source");
        assert!(f.check(bad, "mqtt").is_err(), "on every listener");
        assert_eq!(metrics.auth_blocked_count("http"), 1);
        assert_eq!(metrics.auth_blocked_count("mqtt"), 1);
    }

    #[test]
    fn an_ipv6_source_is_its_64_and_a_mapped_v4_is_the_v4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        assert_eq!(source(a), source(b));
        assert_eq!(source(a), "2001:db8:1:2::/64");
        let m: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert_eq!(source(m), "192.0.2.1");
    }
}
