//! One write request to the server, and what its answer means for the
//! batch: written, retry later, split (413), or drop (the data is bad).

use super::config::{Api, SinkConfig};
use reqwest::header::{self, HeaderValue};
use std::time::Duration;

/// What to do with the lines of one request after the server answered.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// 2xx: stored.
    Written,
    /// 429, 5xx, network error or timeout — and 401/403/404, which are
    /// configuration mistakes (token, database name) that dropping data
    /// would not fix: keep the data and try again later.
    Retry {
        why: String,
        /// The server's `Retry-After`, when it gave one.
        after: Option<Duration>,
    },
    /// 413: the body is too large for the server; send it in halves.
    TooLarge,
    /// Any other 4xx: the server refuses these points and would refuse
    /// them again. `dropped` is the server's own count when it reports a
    /// partial write (InfluxDB 1.x `dropped=N`); otherwise all of them.
    Refused {
        message: String,
        dropped: Option<usize>,
    },
}

pub struct Client {
    http: reqwest::Client,
    url: reqwest::Url,
    auth: Option<HeaderValue>,
    gzip: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL holds no secret (credentials go in headers, marked
        // sensitive); the Authorization header is not shown.
        f.debug_struct("Client")
            .field("url", &self.url.as_str())
            .field("auth", &self.auth.is_some())
            .field("gzip", &self.gzip)
            .finish()
    }
}

/// Makes `https://` URLs work: rustls with the ring provider, installed
/// once for the process.
fn install_tls_provider() {
    // Installing twice fails harmlessly (e.g. a second collector in tests).
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Client {
    pub fn new(cfg: &SinkConfig) -> Result<Client, String> {
        install_tls_provider();
        let url = write_url(cfg)?;
        let auth = match cfg.api {
            Api::V1 => match (&cfg.username, &cfg.password) {
                (Some(u), p) => {
                    use std::fmt::Write as _;
                    let mut raw = String::new();
                    let _ = write!(raw, "{u}:{}", p.as_ref().map(|p| p.expose()).unwrap_or(""));
                    Some(format!("Basic {}", base64(raw.as_bytes())))
                }
                (None, _) => cfg.token.as_ref().map(|t| format!("Token {}", t.expose())),
            },
            Api::V2 | Api::V3 => cfg.token.as_ref().map(|t| format!("Token {}", t.expose())),
        };
        let auth = auth
            .map(|a| {
                HeaderValue::from_str(&a)
                    .map(|mut v| {
                        v.set_sensitive(true);
                        v
                    })
                    .map_err(|_| "sink.token or sink.password holds characters that cannot go in an HTTP header".to_owned())
            })
            .transpose()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms.min(5_000)))
            .tcp_nodelay(true)
            .user_agent(concat!("sobre-collector/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the sink's HTTP client: {e}"))?;
        Ok(Client {
            http,
            url,
            auth,
            gzip: cfg.gzip,
        })
    }

    pub fn url(&self) -> &str {
        self.url.as_str()
    }
}

impl Client {
    /// Sends one encoded body.
    pub async fn post(&self, body: bytes::Bytes) -> Outcome {
        let mut req = self
            .http
            .post(self.url.clone())
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body);
        if self.gzip {
            req = req.header(header::CONTENT_ENCODING, "gzip");
        }
        if let Some(a) = &self.auth {
            req = req.header(header::AUTHORIZATION, a.clone());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    why: describe(&e),
                    after: None,
                };
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Outcome::Written;
        }
        let after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.unwrap_or_default();
        classify(status.as_u16(), &text, after)
    }
}

/// What a non-2xx answer means (see [`Outcome`]).
pub fn classify(status: u16, body: &str, after: Option<Duration>) -> Outcome {
    let message = short(body);
    match status {
        413 => Outcome::TooLarge,
        429 | 500..=599 => Outcome::Retry {
            why: format!("HTTP {status}: {message}"),
            after,
        },
        401 | 403 => Outcome::Retry {
            why: format!("HTTP {status}: {message} (check sink.token or sink.username/password)"),
            after,
        },
        404 => Outcome::Retry {
            why: format!(
                "HTTP {status}: {message} (check sink.url, sink.api and that the database or bucket exists)"
            ),
            after,
        },
        400..=499 => Outcome::Refused {
            dropped: dropped_count(body),
            message: format!("HTTP {status}: {message}"),
        },
        _ => Outcome::Retry {
            why: format!("unexpected HTTP {status}: {message}"),
            after,
        },
    }
}

/// InfluxDB 1.x reports a partial write as `... dropped=N`.
fn dropped_count(body: &str) -> Option<usize> {
    let i = body.find("dropped=")?;
    let digits: String = body[i + 8..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The server's message, bounded for the log.
fn short(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return "(no message)".into();
    }
    match body.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &body[..i]),
        None => body.to_owned(),
    }
}

/// A network error in a few words, with its cause chain.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut out = kind.to_owned();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// The write endpoint with its query: never a secret in it.
pub fn write_url(cfg: &SinkConfig) -> Result<reqwest::Url, String> {
    let mut url =
        reqwest::Url::parse(&cfg.url).map_err(|e| format!("sink.url {:?}: {e}", cfg.url))?;
    let base = url.path().trim_end_matches('/').to_owned();
    let path = match cfg.api {
        Api::V1 => "/write",
        Api::V2 => "/api/v2/write",
        Api::V3 => "/api/v3/write_lp",
    };
    url.set_path(&format!("{base}{path}"));
    {
        let mut q = url.query_pairs_mut();
        match cfg.api {
            Api::V1 => {
                q.append_pair("db", &cfg.db);
                if let Some(rp) = &cfg.rp {
                    q.append_pair("rp", rp);
                }
                q.append_pair("precision", "ms");
            }
            Api::V2 => {
                q.append_pair("org", &cfg.org);
                q.append_pair("bucket", &cfg.bucket);
                q.append_pair("precision", "ms");
            }
            Api::V3 => {
                q.append_pair("db", &cfg.db);
                q.append_pair("precision", "millisecond");
            }
        }
    }
    Ok(url)
}

/// Standard base64 (for HTTP basic auth), to avoid a dependency.
fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(T[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::config::Secret;

    #[test]
    fn urls_per_api() {
        let mut c = SinkConfig {
            url: "http://h:8086/prefix/".into(),
            org: "ville".into(),
            ..Default::default()
        };
        assert_eq!(
            write_url(&c).expect("v2").as_str(),
            "http://h:8086/prefix/api/v2/write?org=ville&bucket=sobre&precision=ms"
        );
        c.api = Api::V1;
        c.rp = Some("un an".into());
        assert_eq!(
            write_url(&c).expect("v1").as_str(),
            "http://h:8086/prefix/write?db=sobre&rp=un+an&precision=ms"
        );
        c.api = Api::V3;
        assert_eq!(
            write_url(&c).expect("v3").as_str(),
            "http://h:8086/prefix/api/v3/write_lp?db=sobre&precision=millisecond"
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(classify(413, "", None), Outcome::TooLarge);
        assert!(matches!(classify(503, "busy", None), Outcome::Retry { .. }));
        assert!(matches!(
            classify(429, "", Some(Duration::from_secs(3))),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        assert!(matches!(classify(401, "", None), Outcome::Retry { .. }));
        assert!(matches!(
            classify(404, "database not found", None),
            Outcome::Retry { .. }
        ));
        assert_eq!(
            classify(
                400,
                r#"{"error":"partial write: field type conflict: dropped=2"}"#,
                None
            ),
            Outcome::Refused {
                message: r#"HTTP 400: {"error":"partial write: field type conflict: dropped=2"}"#
                    .into(),
                dropped: Some(2)
            }
        );
        assert!(matches!(
            classify(400, "unable to parse", None),
            Outcome::Refused { dropped: None, .. }
        ));
    }

    #[test]
    fn basic_auth_and_debug_hide_secrets() {
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
        let c = Client::new(&SinkConfig {
            token: Some(Secret::new("tok-123")),
            ..Default::default()
        })
        .expect("client");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("tok-123"), "{dbg}");
    }
}
