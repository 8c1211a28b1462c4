//! Log lines rate-limited per reason: what strangers can trigger (a
//! refused connection, a bad sign-in, a bad enrolment) is logged at most
//! once per [`PERIOD`] per reason, whatever the client id, address or
//! token they vary; the lines left out are counted and said later ("… and
//! 4,211 more like it in the last 10 s"), by the next line of that reason
//! or by [`summaries`] once the reason falls quiet.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// At most one line per reason this often.
pub const PERIOD: Duration = crate::ingest::rate::LOG_EVERY;

/// What a line is about: (where, reason), e.g. `("mqtt", "not_enrolled")`.
/// Static strings only, so the set of keys is bounded by the code.
pub type Key = (&'static str, &'static str);

#[derive(Debug)]
struct Entry {
    last: Instant,
    suppressed: u64,
}

/// The lines of one period per reason; see the module's documentation.
#[derive(Debug)]
pub struct LogLimiter {
    period: Duration,
    entries: Mutex<HashMap<Key, Entry>>,
}

/// The lines left out before this one: appended to it when not zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct More {
    pub count: u64,
    pub over: Duration,
}

impl fmt::Display for More {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return Ok(());
        }
        write!(
            f,
            " (and {} more like it in the last {} s)",
            grouped(self.count),
            self.over.as_secs()
        )
    }
}

/// `4211` as `4,211` (the agent's scan report writes counts so).
pub use sobre_agent::scan::human::count as grouped;

impl LogLimiter {
    pub fn new(period: Duration) -> LogLimiter {
        LogLimiter {
            period,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a line of `key` is logged now: `Some` with the lines left
    /// out since the previous one, or `None` (counted, to be said later).
    pub fn due(&self, key: Key, now: Instant) -> Option<More> {
        let Ok(mut m) = self.entries.lock() else {
            return Some(More {
                count: 0,
                over: Duration::ZERO,
            });
        };
        match m.get_mut(&key) {
            Some(e) if now.saturating_duration_since(e.last) < self.period => {
                e.suppressed += 1;
                None
            }
            Some(e) => {
                let more = More {
                    count: std::mem::take(&mut e.suppressed),
                    over: now.saturating_duration_since(e.last),
                };
                e.last = now;
                Some(more)
            }
            None => {
                m.insert(
                    key,
                    Entry {
                        last: now,
                        suppressed: 0,
                    },
                );
                Some(More {
                    count: 0,
                    over: Duration::ZERO,
                })
            }
        }
    }

    /// The reasons whose lines were left out and that logged nothing for a
    /// whole period: each with what was left out. They start afresh.
    pub fn quiet(&self, now: Instant) -> Vec<(Key, More)> {
        let Ok(mut m) = self.entries.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        m.retain(|key, e| {
            let over = now.saturating_duration_since(e.last);
            if over < self.period {
                return true;
            }
            if e.suppressed > 0 {
                out.push((
                    *key,
                    More {
                        count: e.suppressed,
                        over,
                    },
                ));
            }
            false
        });
        out.sort_by_key(|(k, _)| *k);
        out
    }
}

/// The process's limiter (one period, every reason).
pub fn logs() -> &'static LogLimiter {
    static LOGS: OnceLock<LogLimiter> = OnceLock::new();
    LOGS.get_or_init(|| LogLimiter::new(PERIOD))
}

/// Says, every period, what was left out of the log by reasons that have
/// fallen quiet since.
pub async fn summaries(cancel: CancellationToken) {
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        for ((what, reason), more) in logs().quiet(Instant::now()) {
            tracing::warn!(
                source = what,
                reason,
                suppressed = more.count,
                "{what} {reason}: {} more like it in the last {} s, not logged one by one",
                grouped(more.count),
                more.over.as_secs()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_reason_per_period_whatever_varies_and_the_rest_summarised() {
        let l = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let key = ("mqtt", "not_enrolled");
        assert_eq!(l.due(key, t0).map(|m| m.count), Some(0), "the first line");
        for _ in 0..4211 {
            assert_eq!(l.due(key, t0 + Duration::from_secs(1)), None);
        }
        assert!(
            l.due(("grpc", "enrol_refused"), t0).is_some(),
            "its own line"
        );
        assert!(l.quiet(t0 + Duration::from_secs(5)).is_empty(), "not yet");
        let later = l.due(key, t0 + Duration::from_secs(12)).expect("due again");
        assert_eq!(later.count, 4211);
        assert_eq!(
            later.to_string(),
            " (and 4,211 more like it in the last 12 s)"
        );
        // Left out, then quiet: the summary says it, once.
        assert_eq!(l.due(key, t0 + Duration::from_secs(13)), None);
        let q = l.quiet(t0 + Duration::from_secs(30));
        assert_eq!(q.len(), 1, "{q:?}");
        assert_eq!((q[0].0, q[0].1.count), (key, 1));
        assert!(l.quiet(t0 + Duration::from_secs(60)).is_empty());
    }
}
