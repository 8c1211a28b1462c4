//! Per-agent rate limit: a token bucket per agent id, so one agent
//! flooding (a bug, a compromised host) cannot starve the others. An
//! envelope over the limit is refused unacked: the agent keeps it spooled
//! and sends it again later.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets kept at most; past it, buckets idle (full) are forgotten.
const MAX_BUCKETS: usize = 100_000;

#[derive(Debug)]
pub struct RateLimit {
    per_s: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimit {
    pub fn new(per_s: f64, burst: f64) -> Self {
        RateLimit {
            per_s,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `agent`'s bucket at `now`; false when empty.
    pub fn allow(&self, agent: &str, now: Instant) -> bool {
        let Ok(mut m) = self.buckets.lock() else {
            return true;
        };
        if m.len() >= MAX_BUCKETS && !m.contains_key(agent) {
            let (per_s, burst) = (self.per_s, self.burst);
            m.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_s < burst
            });
        }
        let (tokens, at) = m.entry(agent.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.per_s)
            .min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
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
}
