//! The `[sink]` section: where the InfluxDB-compatible server is, how to
//! authenticate, and how points are batched and retried.

use serde::{Deserialize, Serialize};

/// Which write API the server speaks.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// InfluxDB 1.x `/write?db=&rp=` (user/password by HTTP basic auth).
    /// InfluxDB 2 and 3 and VictoriaMetrics accept it too.
    V1,
    /// InfluxDB 2.x `/api/v2/write?org=&bucket=` (token). VictoriaMetrics
    /// accepts it too.
    V2,
    /// InfluxDB 3 `/api/v3/write_lp?db=` (token).
    V3,
}

/// A password or token: masked in `--print-config`, `Debug` and errors.
pub use sobre_base::Secret;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Off by default: the collector works without any time-series server.
    pub enabled: bool,
    /// "v1", "v2" or "v3" (see [`Api`]).
    pub api: Api,
    /// Base URL of the server, without a path (`http://` or `https://`).
    pub url: String,
    /// v1 and v3: the database.
    pub db: String,
    /// v1: the retention policy; the database's default when absent.
    pub rp: Option<String>,
    /// v2: the organisation (name or id). VictoriaMetrics ignores it.
    pub org: String,
    /// v2: the bucket.
    pub bucket: String,
    /// v2 and v3: the API token (sent as `Authorization: Token …`).
    pub token: Option<Secret>,
    /// v1: user name and password (HTTP basic auth).
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Most points in one write request. 5000 is the size InfluxData
    /// recommends for writes.
    pub batch_max: usize,
    /// How often new samples are looked for and sent when there is less
    /// than a full batch. A backlog is sent as fast as the server takes it.
    pub flush_interval_ms: u64,
    /// Time limit of one write request.
    pub timeout_ms: u64,
    /// Backoff between retries (429, 5xx, network errors), doubled each
    /// time with ±50 % jitter, from `retry_min_ms` up to `retry_max_ms`.
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    /// Compress request bodies (`Content-Encoding: gzip`): about 5x fewer
    /// bytes, for about 0.9 ms of CPU per 1,000 `usage` points; with the
    /// server on the same host or a fast LAN, `false` saves that CPU.
    pub gzip: bool,
    /// How often the per-host points (lifetime, embodied emissions) and the
    /// latest storage summaries are written. The first are written at start.
    pub snapshot_interval_ms: u64,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            enabled: false,
            api: Api::V2,
            url: "http://127.0.0.1:8086".into(),
            db: "sobre".into(),
            rp: None,
            org: String::new(),
            bucket: "sobre".into(),
            token: None,
            username: None,
            password: None,
            batch_max: 5000,
            flush_interval_ms: 5000,
            timeout_ms: 10_000,
            retry_min_ms: 500,
            retry_max_ms: 60_000,
            gzip: true,
            snapshot_interval_ms: 900_000,
        }
    }
}

impl SinkConfig {
    /// Checks what types alone cannot (also when disabled, so a typo is
    /// found before the sink is switched on).
    pub fn validate(&self) -> Result<(), String> {
        let url =
            reqwest::Url::parse(&self.url).map_err(|e| format!("sink.url {:?}: {e}", self.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "sink.url {:?} must start with http:// or https://",
                self.url
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "sink.url must not hold credentials: use sink.username/sink.password (v1) or sink.token (v2, v3)"
                    .into(),
            );
        }
        if url.query().is_some() {
            return Err(
                "sink.url must not hold a query: the sink builds it from db, rp, org and bucket"
                    .into(),
            );
        }
        match self.api {
            Api::V1 | Api::V3 if self.db.is_empty() => {
                return Err("sink.db must name the database (api = \"v1\" or \"v3\")".into());
            }
            Api::V2 if self.bucket.is_empty() => {
                return Err("sink.bucket must name the bucket (api = \"v2\")".into());
            }
            _ => {}
        }
        if self.password.is_some() && self.username.is_none() {
            return Err("sink.password needs sink.username".into());
        }
        if self.batch_max == 0 || self.batch_max > 1_000_000 {
            return Err("sink.batch_max must be between 1 and 1000000".into());
        }
        if self.flush_interval_ms < 10 {
            return Err("sink.flush_interval_ms must be at least 10".into());
        }
        if self.timeout_ms < 100 {
            return Err("sink.timeout_ms must be at least 100".into());
        }
        if self.retry_min_ms == 0 || self.retry_max_ms < self.retry_min_ms {
            return Err("sink.retry_min_ms must be >= 1 and <= sink.retry_max_ms".into());
        }
        if self.snapshot_interval_ms < 1000 {
            return Err("sink.snapshot_interval_ms must be at least 1000".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_in_debug() {
        let cfg = SinkConfig {
            token: Some(Secret::new("s3cr3t-token")),
            username: Some("u".into()),
            password: Some(Secret::new("hunter2")),
            ..Default::default()
        };
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("s3cr3t") && !dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("***"), "{dbg}");
    }

    #[test]
    fn validation_names_the_key() {
        let bad = |f: fn(&mut SinkConfig)| {
            let mut c = SinkConfig::default();
            f(&mut c);
            c.validate().expect_err("invalid")
        };
        assert!(bad(|c| c.url = "ftp://x".into()).contains("sink.url"));
        assert!(bad(|c| c.url = "http://u:p@x:8086".into()).contains("credentials"));
        assert!(bad(|c| c.url = "http://x:8086/?db=a".into()).contains("query"));
        assert!(bad(|c| c.bucket.clear()).contains("sink.bucket"));
        assert!(
            bad(|c| {
                c.api = Api::V1;
                c.db.clear();
            })
            .contains("sink.db")
        );
        assert!(bad(|c| c.batch_max = 0).contains("batch_max"));
        assert!(bad(|c| c.retry_max_ms = 1).contains("retry_min_ms"));
        assert!(bad(|c| c.password = Some(Secret::new("p"))).contains("username"));
        SinkConfig::default()
            .validate()
            .expect("defaults are valid");
    }

    #[test]
    fn api_names() {
        #[derive(Deserialize)]
        struct W {
            api: Api,
        }
        let w: W = toml::from_str("api = \"v1\"").expect("v1");
        assert_eq!(w.api, Api::V1);
        assert!(toml::from_str::<W>("api = \"v4\"").is_err());
    }
}
