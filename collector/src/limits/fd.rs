//! Open files: the soft `RLIMIT_NOFILE` raised to the hard limit at
//! start (1,024 by default on most systems, far below what 5,000 agents
//! need), and the share of it that connections may take, so that the
//! store, the sink and `accept` itself always find a descriptor.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept out of the connections' budget: the store's files
/// (SQLite, its WAL and shared memory, per connection), the sink's and the
/// collector's own MQTT client's sockets, and a descriptor for `accept`.
pub const RESERVE: u64 = 512;

/// Fewest descriptors given to connections, whatever the limit.
const MIN_BUDGET: u64 = 64;

/// What [`raise`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFile {
    /// The soft limit before.
    pub was: Option<u64>,
    /// The soft limit now (`None`: unlimited).
    pub now: Option<u64>,
}

impl NoFile {
    /// Descriptors connections may hold at once.
    pub fn budget(&self) -> u64 {
        // An unlimited soft limit still has the kernel's per-process
        // ceiling (fs.nr_open).
        let limit = self.now.unwrap_or_else(nr_open);
        limit.saturating_sub(RESERVE).max(MIN_BUDGET)
    }
}

/// The kernel's largest per-process limit (`fs.nr_open`), 1,048,576 by
/// default.
fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20)
}

/// Raises the soft open-files limit to the hard one (an unlimited hard
/// limit: to `fs.nr_open`, which the kernel accepts). Raising the soft
/// limit up to the hard one needs no privilege; the hard limit is left
/// alone. On failure the limit stays what it was.
pub fn raise() -> NoFile {
    let cur = getrlimit(Resource::Nofile);
    let target = cur.maximum.unwrap_or_else(nr_open);
    let was = cur.current;
    if was.is_some_and(|c| c >= target) || was.is_none() {
        return NoFile { was, now: was };
    }
    let new = Rlimit {
        current: Some(target),
        maximum: cur.maximum,
    };
    match setrlimit(Resource::Nofile, new) {
        Ok(()) => NoFile {
            was,
            now: Some(target),
        },
        Err(e) => {
            tracing::warn!(error = %e, soft = ?was, hard = ?cur.maximum, "cannot raise the open-files limit (RLIMIT_NOFILE)");
            NoFile { was, now: was }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_keeps_a_reserve() {
        let n = NoFile {
            was: Some(1024),
            now: Some(1024),
        };
        assert_eq!(n.budget(), 1024 - RESERVE);
        let tiny = NoFile {
            was: Some(100),
            now: Some(100),
        };
        assert_eq!(tiny.budget(), MIN_BUDGET);
    }

    #[test]
    fn raising_reaches_the_hard_limit_and_is_idempotent() {
        let first = raise();
        let hard = getrlimit(Resource::Nofile).maximum;
        assert_eq!(getrlimit(Resource::Nofile).current, first.now);
        if let (Some(h), Some(now)) = (hard, first.now) {
            assert_eq!(now, h, "raised to the hard limit");
        }
        assert_eq!(raise().now, first.now, "a second call changes nothing");
    }
}
