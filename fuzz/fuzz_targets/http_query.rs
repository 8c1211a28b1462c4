//! Exercises the HTTP API's query parsing (issue #21): arbitrary query
//! strings through the footprint endpoint's own parsing (axum's `Query`,
//! the bounded `TimeMs` parameters, the window checks). Never a panic or
//! an overflow (run with -a: overflow checks on), and any window it
//! accepts is bounded: whole hours, at most 400 days, at most 1,488 steps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sobre_collector::http::footprint_api::window_from_query;

const HOUR: i64 = 3_600_000;

fuzz_target!(|query: &str| {
    // The clock is not the client's, but the checks must hold at any hour.
    for now in [0, 1_800_000_000_000, i64::MAX, i64::MIN] {
        check(query, now);
    }
});

fn check(query: &str, now: i64) {
    if let Ok(w) = window_from_query(query, now) {
        assert!(w.from_ms < w.to_ms, "{w:?}");
        assert!(w.from_ms % HOUR == 0 && w.to_ms % HOUR == 0, "{w:?}");
        let span = w.to_ms - w.from_ms;
        assert!(span <= 400 * 24 * HOUR, "{w:?}");
        if let Some(step) = w.step_ms {
            assert!(span / step <= 62 * 24, "{w:?}");
        }
    }
}
