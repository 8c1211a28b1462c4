//! `Secret`: a password, token or key read from config. It prints as
//! `********` in `Debug`, `Display` and serialisation (so `--print-config`
//! and any `{:?}` of a config mask it); only [`Secret::expose`] gives the
//! value, at the one place that sends it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// What a secret prints as.
pub const MASK: &str = "********";

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself: only where it is sent or compared.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    struct Cfg {
        password: Secret,
        token: Option<Secret>,
    }

    #[test]
    fn a_secret_never_prints_but_reads_back() {
        let c: Cfg = toml::from_str("password = \"hunter2\"\ntoken = \"t0k\"").expect("parse");
        assert_eq!(c.password.expose(), "hunter2");
        let shown = format!("{c:?} {} {}", c.password, toml::to_string(&c).expect("ser"));
        assert!(
            !shown.contains("hunter2") && !shown.contains("t0k"),
            "{shown}"
        );
        assert!(shown.contains(MASK));
    }
}
