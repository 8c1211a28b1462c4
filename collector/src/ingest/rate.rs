//! Per-agent rate limit: a token bucket per agent id, so one agent
//! flooding (a bug, a compromised host) cannot starve the others. An
//! envelope over the limit is refused unacked: the agent keeps it spooled
//! and sends it again later. Refusals are logged once per agent per
//! [`LOG_EVERY`], with the count since the last line: a flood must not
//! become a flood of log lines (measured: 400-900 MB of log in 20 s).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept at most; past it, buckets idle (full) are forgotten.
const MAX_BUCKETS: usize = 100_000;

/// At most one log line per agent refused this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// Refusals not yet reported in a log line.
    refused: u64,
    /// When the last line about this agent was logged.
    logged: Option<Instant>,
}

#[derive(Debug)]
pub struct RateLimit {
    per_s: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimit {
    pub fn new(per_s: f64, burst: f64) -> Self {
        RateLimit {
            per_s,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// How long until one token is back at this rate: a stream over its
    /// limit is not read for that long (HTTP/2 flow control then slows
    /// the sender, not the others).
    pub fn refill_time(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.per_s)
    }

    /// Takes one token from `agent`'s bucket at `now`; false when empty.
    pub fn allow(&self, agent: &str, now: Instant) -> bool {
        self.take(agent, now).is_ok()
    }

    /// Whether `key` holds a whole token at `now`, without taking it:
    /// `Err` with the time until one is back. An unknown key has a full
    /// bucket (and is not remembered).
    pub fn peek(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let Ok(m) = self.buckets.lock() else {
            return Ok(());
        };
        let Some(b) = m.get(key) else {
            return Ok(());
        };
        let tokens = (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * self.per_s)
            .min(self.burst);
        if tokens >= 1.0 {
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - tokens) / self.per_s))
    }

    /// Like [`allow`](Self::allow); a refusal says whether to log it:
    /// `Some(n)` for the first refusal of an agent and then at most once
    /// per [`LOG_EVERY`], `n` counting the refusals since the last line
    /// (this one included); `None` to count it without a line.
    pub fn take(&self, agent: &str, now: Instant) -> Result<(), Option<u64>> {
        self.take_or_wait(agent, now).map_err(|w| w.log)
    }

    /// Like [`take`](Self::take); a refusal also says how long until the
    /// bucket holds a whole token again, so a caller can stop reading the
    /// sender for exactly that long (the MQTT guard, `guard::relay`).
    pub fn take_or_wait(&self, agent: &str, now: Instant) -> Result<(), Wait> {
        let Ok(mut m) = self.buckets.lock() else {
            return Ok(());
        };
        if m.len() >= MAX_BUCKETS && !m.contains_key(agent) {
            let (per_s, burst) = (self.per_s, self.burst);
            m.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_s < burst
            });
        }
        // Known agents (nearly every call) cost no allocation.
        if !m.contains_key(agent) {
            m.insert(
                agent.to_owned(),
                Bucket {
                    tokens: self.burst,
                    at: now,
                    refused: 0,
                    logged: None,
                },
            );
        }
        let Some(b) = m.get_mut(agent) else {
            return Ok(());
        };
        b.tokens = (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * self.per_s)
            .min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        b.refused += 1;
        let after = Duration::from_secs_f64(((1.0 - b.tokens) / self.per_s).max(0.0));
        let due = b
            .logged
            .is_none_or(|t| now.saturating_duration_since(t) >= LOG_EVERY);
        if !due {
            return Err(Wait { after, log: None });
        }
        b.logged = Some(now);
        Err(Wait {
            after,
            log: Some(std::mem::take(&mut b.refused)),
        })
    }
}

/// A refusal of [`RateLimit::take_or_wait`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wait {
    /// Until the bucket holds one whole token.
    pub after: Duration,
    /// As in [`RateLimit::take`]: `Some(n)` when this refusal should be
    /// logged, with the refusals since the last line.
    pub log: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_sustained_rate_per_agent() {
        let r = RateLimit::new(10.0, 5.0);
        let t0 = Instant::now();
        let allowed = (0..20).filter(|_| r.allow("flood", t0)).count();
        assert_eq!(allowed, 5, "the burst, then nothing at the same instant");
        assert!(r.allow("calm", t0), "another agent has its own bucket");
        // 1 s later: 10 more tokens, capped at the burst.
        let t1 = t0 + Duration::from_secs(1);
        let allowed = (0..20).filter(|_| r.allow("flood", t1)).count();
        assert_eq!(allowed, 5);
        let t2 = t1 + Duration::from_millis(100);
        assert!(r.allow("flood", t2), "one token per 100 ms at 10/s");
        assert!(!r.allow("flood", t2));
    }

    #[test]
    fn refusals_are_logged_once_per_period_with_their_count() {
        let r = RateLimit::new(1.0, 1.0);
        let t0 = Instant::now();
        assert_eq!(r.take("flood", t0), Ok(()));
        assert_eq!(
            r.take("flood", t0),
            Err(Some(1)),
            "the first refusal is logged"
        );
        for _ in 0..99 {
            assert_eq!(r.take("flood", t0), Err(None));
        }
        assert_eq!(r.take("other", t0), Ok(()));
        assert_eq!(
            r.take("other", t0),
            Err(Some(1)),
            "each agent has its own line"
        );
        // Within the period: refused and counted, no line; after it, one
        // line with every refusal since the last one.
        let t1 = t0 + LOG_EVERY - Duration::from_millis(1);
        assert_eq!(r.take("flood", t1), Ok(()), "tokens came back meanwhile");
        assert_eq!(r.take("flood", t1), Err(None));
        let t2 = t0 + LOG_EVERY;
        assert_eq!(r.take("flood", t2), Err(Some(101)));
        assert_eq!(r.take("flood", t2), Err(None));
    }

    #[test]
    fn peeking_takes_nothing() {
        let r = RateLimit::new(1.0, 2.0);
        let t0 = Instant::now();
        assert_eq!(r.peek("a", t0), Ok(()), "unknown: a full bucket");
        for _ in 0..5 {
            assert_eq!(r.peek("a", t0), Ok(()));
        }
        assert!(r.allow("a", t0) && r.allow("a", t0));
        assert_eq!(r.peek("a", t0), Err(Duration::from_secs(1)));
        assert_eq!(r.peek("a", t0 + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn a_refusal_says_when_the_next_token_is_due() {
        let r = RateLimit::new(10.0, 2.0);
        let t0 = Instant::now();
        assert!(r.take_or_wait("a", t0).is_ok());
        assert!(r.take_or_wait("a", t0).is_ok());
        let w = r.take_or_wait("a", t0).expect_err("empty");
        assert_eq!(w.after, Duration::from_millis(100));
        // 40 ms later, 0.4 of a token: 60 ms to go.
        let w = r
            .take_or_wait("a", t0 + Duration::from_millis(40))
            .expect_err("still empty");
        assert!(
            (w.after.as_secs_f64() - 0.060).abs() < 1e-9,
            "{:?}",
            w.after
        );
        assert!(r.take_or_wait("a", t0 + Duration::from_millis(100)).is_ok());
    }
}
