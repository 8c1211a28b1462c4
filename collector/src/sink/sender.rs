//! Sends prepared batches, one request at a time, in order: retries 429,
//! 5xx and network errors with backoff and jitter, splits on 413, drops
//! and counts what another 4xx refuses. Returns once the server has
//! answered for every line of a batch.

use super::Batch;
use super::body;
use super::client::{Client, Outcome};
use super::config::SinkConfig;
use crate::metrics::Metrics;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long a request already on the wire may still finish after the
/// collector was told to stop (its answer then moves the cursor).
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// Sends batches, one request at a time, in order.
pub struct Sender {
    client: Client,
    cfg: SinkConfig,
    metrics: Arc<Metrics>,
    failures: u64,
    failing_since: Option<Instant>,
}

impl Sender {
    pub fn new(client: Client, cfg: SinkConfig, metrics: Arc<Metrics>) -> Sender {
        Sender {
            client,
            cfg,
            metrics,
            failures: 0,
            failing_since: None,
        }
    }

    /// Sends every line of `batch` until the server has answered for each
    /// (written or refused). False if stopped before that.
    pub async fn deliver(&mut self, batch: &Batch, cancel: &CancellationToken) -> bool {
        let n = batch.len();
        // Ranges of lines still to send, the next one last.
        let mut todo = vec![(0usize, n)];
        let mut body = Some(batch.body.clone());
        while let Some((a, b)) = todo.pop() {
            let body = match body.take() {
                Some(whole) => whole,
                None => body::encode(self.cfg.gzip, batch.slice(a, b)),
            };
            let count = (b - a) as u64;
            let mut attempt = 0u32;
            loop {
                let post = self.client.post(body.clone());
                let outcome = tokio::select! {
                    o = post => o,
                    () = async {
                        cancel.cancelled().await;
                        tokio::time::sleep(STOP_GRACE).await;
                    } => return false,
                };
                match outcome {
                    Outcome::Written => {
                        self.metrics.sink_written.fetch_add(count, Relaxed);
                        self.recovered();
                        break;
                    }
                    Outcome::TooLarge if b - a > 1 => {
                        let mid = a + (b - a) / 2;
                        tracing::info!(
                            points = count,
                            "server says the batch is too large (413); sending it in halves (lower sink.batch_max)"
                        );
                        todo.push((mid, b));
                        todo.push((a, mid));
                        break;
                    }
                    Outcome::TooLarge => {
                        self.metrics.sink_dropped.fetch_add(1, Relaxed);
                        tracing::error!(
                            "server refuses a single point as too large (413); dropped"
                        );
                        break;
                    }
                    Outcome::Refused { message, dropped } => {
                        let dropped = dropped.map_or(count, |d| (d as u64).min(count));
                        self.metrics.sink_dropped.fetch_add(dropped, Relaxed);
                        self.metrics
                            .sink_written
                            .fetch_add(count - dropped, Relaxed);
                        tracing::error!(
                            dropped,
                            of = count,
                            server = %message,
                            "server refused points; dropped and counted"
                        );
                        self.recovered();
                        break;
                    }
                    Outcome::Retry { why, after } => {
                        self.metrics.sink_retried.fetch_add(count, Relaxed);
                        self.failures += 1;
                        let since = *self.failing_since.get_or_insert_with(Instant::now);
                        let delay = after
                            .map(|d| d.min(Duration::from_millis(self.cfg.retry_max_ms)))
                            .unwrap_or_else(|| self.backoff(attempt));
                        if self.failures.is_power_of_two() {
                            tracing::warn!(
                                url = %self.client.url(),
                                error = %why,
                                failures = self.failures,
                                failing_for_s = since.elapsed().as_secs(),
                                retry_in_ms = delay.as_millis() as u64,
                                "sink write failed; the store keeps the points, retrying"
                            );
                        }
                        attempt = attempt.saturating_add(1);
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = cancel.cancelled() => return false,
                        }
                    }
                }
            }
        }
        true
    }

    /// Exponential backoff from `retry_min_ms`, capped at `retry_max_ms`,
    /// with ±50 % jitter so that collectors do not retry in step.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .cfg
            .retry_min_ms
            .saturating_mul(1u64 << attempt.min(20))
            .min(self.cfg.retry_max_ms);
        let jittered = base as f64 * (0.5 + fastrand::f64());
        Duration::from_millis(jittered as u64)
    }

    fn recovered(&mut self) {
        if let Some(since) = self.failing_since.take() {
            tracing::info!(
                failures = self.failures,
                after_s = since.elapsed().as_secs(),
                "sink writes succeed again"
            );
        }
        self.failures = 0;
    }
}
