//! Background mode's CPU budget: work in small slices and sleep between
//! them so the thread's CPU time stays within a share of one core.
//!
//! Why not `nice`/`ioprio_set`: both need `libc` calls, and the workspace
//! denies `unsafe_code`. The agent's systemd unit
//! (`agent/packaging/sobre-agent.service`) sets `Nice=19`, `CPUWeight=20`
//! and `IOSchedulingClass=idle` for kernel-level priority; this pacer
//! bounds what the scan uses even where the machine is otherwise idle,
//! which priorities alone do not. I/O is paced with it: every read is
//! followed by hashing, which is CPU.
//!
//! The budget is one token bucket for the whole scan: tokens accrue at
//! `budget` CPU-seconds per wall second, up to a small burst, and the
//! process's CPU time (every thread, from `/proc/self/stat`) is taken from
//! it; in debt, the worker that notices sleeps until the debt is repaid.
//! Time blocked on I/O uses no CPU and cannot bank more than the burst, so
//! no minute goes over budget; work done between stages is charged too.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// How often the CPU clock is read while working.
const CHECK_EVERY: Duration = Duration::from_millis(10);
/// Most CPU time banked while idle, in wall seconds of budget.
const BURST_SECONDS: f64 = 1.0;
/// Longest single sleep, so a cancel is seen quickly.
const MAX_NAP: Duration = Duration::from_millis(200);

/// The scan's CPU budget, shared by its workers.
#[derive(Debug)]
pub(crate) struct Budget {
    fraction: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    last_wall: Instant,
    last_cpu: Duration,
    slept: Duration,
}

impl Budget {
    /// `fraction`: share of one core (0.05 = 5 %).
    pub fn new(fraction: f64) -> Budget {
        Budget {
            fraction: fraction.clamp(0.001, 1.0),
            state: Mutex::new(State {
                tokens: 0.0,
                last_wall: Instant::now(),
                last_cpu: process_cpu().unwrap_or_default(),
                slept: Duration::ZERO,
            }),
        }
    }

    /// Total time workers slept to stay within the budget.
    pub fn slept(&self) -> Duration {
        self.state.lock().map(|s| s.slept).unwrap_or_default()
    }

    fn tick(&self, cancel: &AtomicBool) {
        let nap = {
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            let now = Instant::now();
            let wall = now.duration_since(st.last_wall);
            if wall < CHECK_EVERY {
                return;
            }
            // Without the clock, count wall time as CPU: never over
            // budget, only slower.
            let cpu = process_cpu().unwrap_or(st.last_cpu + wall);
            let used = cpu.saturating_sub(st.last_cpu);
            let (tokens, nap) = settle(st.tokens, used, wall, self.fraction);
            // A nap repays the debt; it must not also earn tokens.
            st.tokens = if nap.is_zero() { tokens } else { 0.0 };
            st.last_wall = now + nap;
            st.last_cpu = cpu;
            st.slept += nap;
            nap
        };
        let until = Instant::now() + nap;
        loop {
            let now = Instant::now();
            if now >= until || cancel.load(Relaxed) {
                break;
            }
            std::thread::sleep((until - now).min(MAX_NAP));
        }
    }
}

/// One worker's handle on the budget. Without one, `tick` does nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacer<'a>(Option<&'a Budget>);

impl<'a> Pacer<'a> {
    pub fn new(budget: Option<&'a Budget>) -> Pacer<'a> {
        Pacer(budget)
    }

    /// Call after each small unit of work (a directory entry, a block read).
    pub fn tick(&mut self, cancel: &AtomicBool) {
        if let Some(b) = self.0 {
            b.tick(cancel);
        }
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

/// CPU time of the whole process (user + system), from `/proc/self/stat`,
/// in clock ticks of 10 ms (USER_HZ is 100 on Linux).
pub(crate) fn process_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may hold spaces: state is the
    // first, utime the 12th, stime the 13th.
    let mut f = s.get(s.rfind(')')? + 2..)?.split_whitespace().skip(11);
    let ticks: u64 = f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
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
    fn process_clock_advances_with_work() {
        let Some(a) = process_cpu() else { return };
        // Spin until the clock moves 30 ms (three ticks), however loaded
        // the machine; give up after 20 s of wall time.
        let t = Instant::now();
        let mut x = 0u64;
        let mut b = a;
        while b < a + Duration::from_millis(30) && t.elapsed() < Duration::from_secs(20) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
            }
            b = process_cpu().expect("clock");
        }
        assert!(b >= a + Duration::from_millis(30), "{a:?} -> {b:?}");
    }

    #[test]
    fn a_cancelled_scan_does_not_nap() {
        let b = Budget::new(0.01);
        let cancel = AtomicBool::new(true);
        let mut p = Pacer::new(Some(&b));
        let t = Instant::now();
        // Burn CPU past the budget: the debt is recorded, the nap skipped.
        while t.elapsed() < Duration::from_millis(30) {
            p.tick(&cancel);
        }
        assert!(t.elapsed() < Duration::from_secs(2), "no 0.2 s naps");
        Pacer::new(None).tick(&cancel);
    }
}
