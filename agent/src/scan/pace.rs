//! Background mode's CPU budget: work in small slices and sleep between
//! them so the thread's CPU time stays within a share of one core.
//!
//! Why not `nice`/`ioprio_set`: both need `libc` calls, and the workspace
//! denies `unsafe_code`. Run the agent's service with `Nice=19`,
//! `CPUSchedulingPolicy=idle` and `IOSchedulingClass=idle` (systemd) for
//! kernel-level priority; this pacer bounds what the scan uses even where
//! the machine is otherwise idle, which priorities alone do not. I/O is
//! paced with it: every read is followed by hashing, which is CPU.
//!
//! The budget is a token bucket: tokens accrue at `budget` CPU-seconds per
//! wall second, up to a small burst, and the thread's CPU time (from
//! `/proc/thread-self/schedstat`, nanoseconds) is taken from it; in debt,
//! the thread sleeps until the debt is repaid. Time blocked on I/O uses no
//! CPU and cannot bank more than the burst, so no minute goes over budget.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// How often the CPU clock is read while working.
const CHECK_EVERY: Duration = Duration::from_millis(10);
/// Most CPU time banked while idle, in wall seconds of budget.
const BURST_SECONDS: f64 = 1.0;
/// Longest single sleep, so a cancel is seen quickly.
const MAX_NAP: Duration = Duration::from_millis(200);

/// Paces one worker thread. Without a budget, `tick` does nothing.
#[derive(Debug)]
pub(crate) struct Pacer {
    budget: Option<f64>,
    tokens: f64,
    last_wall: Instant,
    last_cpu: Duration,
    /// CPU time slept for, for reports and tests.
    pub slept: Duration,
}

impl Pacer {
    /// `budget`: share of one core (0.05 = 5 %), or None for full speed.
    pub fn new(budget: Option<f64>) -> Pacer {
        Pacer {
            budget: budget.filter(|b| *b > 0.0 && *b < 1.0),
            tokens: 0.0,
            last_wall: Instant::now(),
            last_cpu: thread_cpu().unwrap_or_default(),
            slept: Duration::ZERO,
        }
    }

    /// Call after each small unit of work (a directory entry, a block read).
    pub fn tick(&mut self, cancel: &AtomicBool) {
        let Some(budget) = self.budget else { return };
        let now = Instant::now();
        let wall = now.duration_since(self.last_wall);
        if wall < CHECK_EVERY {
            return;
        }
        // Without a per-thread CPU clock, count wall time as CPU: never
        // over budget, only slower.
        let cpu = thread_cpu().unwrap_or(self.last_cpu + wall);
        let used = cpu.saturating_sub(self.last_cpu);
        let (tokens, nap) = settle(self.tokens, used, wall, budget);
        self.tokens = tokens;
        if !nap.is_zero() {
            self.sleep(nap, cancel);
            // The nap has paid the debt; it must not also earn tokens.
            self.tokens = 0.0;
        }
        self.last_wall = Instant::now();
        self.last_cpu = thread_cpu().unwrap_or(cpu);
    }

    fn sleep(&mut self, nap: Duration, cancel: &AtomicBool) {
        let until = Instant::now() + nap;
        loop {
            let now = Instant::now();
            if now >= until || cancel.load(Relaxed) {
                break;
            }
            std::thread::sleep((until - now).min(MAX_NAP));
        }
        self.slept += nap;
    }
}

/// One step of the token bucket: `used` CPU over `wall`, at `budget`
/// (share of a core). Returns the new token balance and how long to sleep
/// to repay a debt (the balance is then to be reset to zero).
pub(crate) fn settle(tokens: f64, used: Duration, wall: Duration, budget: f64) -> (f64, Duration) {
    let cap = budget * BURST_SECONDS;
    let earned = (tokens + wall.as_secs_f64() * budget).min(cap);
    let left = earned - used.as_secs_f64();
    if left >= 0.0 {
        (left, Duration::ZERO)
    } else {
        (left, Duration::from_secs_f64(-left / budget))
    }
}

/// CPU time of the calling thread, from `/proc/thread-self/schedstat`.
pub(crate) fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn debt_is_repaid_by_sleeping_at_the_budget_rate() {
        // 10 ms of CPU in 10 ms of wall at 5 %: 0.5 ms earned, 9.5 ms owed,
        // repaid by 190 ms of sleep (9.5 / 0.05).
        let (tokens, nap) = settle(0.0, MS(10), MS(10), 0.05);
        assert!((tokens + 0.0095).abs() < 1e-9, "{tokens}");
        assert_eq!(nap.as_micros(), 190_000);
        // Within budget: no sleep, the rest is banked.
        let (tokens, nap) = settle(0.0, MS(1), MS(100), 0.05);
        assert_eq!(nap, Duration::ZERO);
        assert!((tokens - 0.004).abs() < 1e-9, "{tokens}");
    }

    #[test]
    fn idle_time_banks_at_most_the_burst() {
        // An hour blocked on I/O earns 1 s × 5 % = 50 ms, not 180 s.
        let (tokens, _) = settle(0.0, Duration::ZERO, Duration::from_secs(3600), 0.05);
        assert!((tokens - 0.05).abs() < 1e-9, "{tokens}");
        let (_, nap) = settle(tokens, MS(150), MS(10), 0.05);
        // 150 - 50 (cap) = 100 ms owed → 2 s of sleep.
        assert_eq!(nap.as_millis(), 2000);
    }

    #[test]
    fn simulated_minute_stays_within_budget() {
        // A worker that would burn CPU flat out: each slice costs 10 ms of
        // CPU in 10 ms of wall, then it sleeps what `settle` says.
        let budget = 0.05;
        let (mut tokens, mut wall, mut cpu) = (0.0, Duration::ZERO, Duration::ZERO);
        while wall < Duration::from_secs(60) {
            let (t, nap) = settle(tokens, MS(10), MS(10), budget);
            tokens = if nap.is_zero() { t } else { 0.0 };
            cpu += MS(10);
            wall += MS(10) + nap;
        }
        let share = cpu.as_secs_f64() / wall.as_secs_f64();
        assert!(share <= budget + 1e-9, "{share}");
        assert!(share > budget * 0.9, "and uses most of it: {share}");
    }

    #[test]
    fn thread_clock_advances_with_work() {
        let Some(a) = thread_cpu() else { return };
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = thread_cpu().expect("clock");
        assert!(b > a);
    }

    #[test]
    fn no_budget_never_sleeps() {
        let mut p = Pacer::new(None);
        let cancel = AtomicBool::new(false);
        for _ in 0..1000 {
            p.tick(&cancel);
        }
        assert_eq!(p.slept, Duration::ZERO);
    }
}
