//! Typed, bounded values of the HTTP API's queries and bodies: every
//! number a request carries is one of these, so that it is checked where it
//! is parsed (a clear 400 naming the range) and arithmetic on it cannot
//! wrap (issue #21: `to - from` at the extremes of i64 once built a bucket
//! per hour for billions of years).

use serde::{Deserialize, Deserializer};

/// The latest instant the API takes: 9999-12-31T23:59:59.999Z.
pub use sobre_base::civil::MAX_TIME_MS;

/// An instant in a request: milliseconds since 1970-01-01 UTC, from 1970
/// to the end of year 9999. Differences of two are at most ~3.2e14: no
/// sum or difference of a few of them can overflow an i64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeMs(i64);

impl TimeMs {
    pub fn new(ms: i64) -> Result<Self, String> {
        if (0..=MAX_TIME_MS).contains(&ms) {
            Ok(TimeMs(ms))
        } else {
            Err(format!(
                "{ms} is not a time Sobre takes: give milliseconds since 1970, from 0 to {MAX_TIME_MS} (year 9999)"
            ))
        }
    }

    /// A time the program made (the clock), kept in the same range.
    pub fn clamped(ms: i64) -> Self {
        TimeMs(ms.clamp(0, MAX_TIME_MS))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for TimeMs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ms = i64::deserialize(d)?;
        TimeMs::new(ms).map_err(serde::de::Error::custom)
    }
}

/// A whole number in `MIN..=MAX`, refused (not clamped) outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bounded<const MIN: i64, const MAX: i64>(i64);

impl<const MIN: i64, const MAX: i64> Bounded<MIN, MAX> {
    pub fn new(v: i64) -> Result<Self, String> {
        if (MIN..=MAX).contains(&v) {
            Ok(Bounded(v))
        } else {
            Err(format!("{v} is out of range: give {MIN} to {MAX}"))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }

    /// As a count (every use of these is a count or a number of days; MIN
    /// is never negative where this is called).
    pub fn count(self) -> usize {
        usize::try_from(self.0).unwrap_or(0)
    }
}

impl<'de, const MIN: i64, const MAX: i64> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        Bounded::new(v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Deserialize)]
    struct Q {
        t: Option<TimeMs>,
        n: Option<Bounded<1, 10>>,
    }

    /// Through axum's own query extractor, as a request is.
    fn parse(q: &str) -> Result<Q, String> {
        let uri: axum::http::Uri = format!("/x?{q}").parse().map_err(|e| format!("{e}"))?;
        axum::extract::Query::<Q>::try_from_uri(&uri)
            .map(|q| q.0)
            .map_err(|e| e.body_text())
    }

    #[test]
    fn extremes_of_i64_are_refused_with_the_range_named() {
        for q in [
            format!("t={}", i64::MIN),
            format!("t={}", i64::MAX),
            "t=-1".into(),
            format!("t={}", MAX_TIME_MS + 1),
        ] {
            let e = parse(&q).expect_err(&q);
            assert!(e.contains("year 9999"), "{q}: {e}");
        }
        for q in ["n=0", "n=11", "n=-9223372036854775808"] {
            let e = parse(q).expect_err(q);
            assert!(e.contains("1 to 10"), "{q}: {e}");
        }
        let ok = parse(&format!("t={MAX_TIME_MS}&n=10")).expect("in range");
        assert_eq!(ok.t.map(TimeMs::get), Some(MAX_TIME_MS));
        assert_eq!(ok.n.map(Bounded::get), Some(10));
    }

    proptest! {
        #[test]
        fn differences_of_two_times_never_overflow(a in any::<i64>(), b in any::<i64>()) {
            if let (Ok(a), Ok(b)) = (TimeMs::new(a), TimeMs::new(b)) {
                let d = a.get() - b.get();
                prop_assert!(d.checked_mul(4).is_some());
                prop_assert!(a.get().checked_add(b.get()).is_some());
            }
        }
    }
}
