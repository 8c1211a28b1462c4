//! `Secret`: a password, token or key read from config. It prints as
//! `********` in `Debug`, `Display` and serialisation (so `--print-config`
//! and any `{:?}` of a config mask it); only [`Secret::expose`] gives the
//! value, at the one place that sends it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// What a secret prints as.
pub const MASK: &str = "********";

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret {
    value: String,
    /// What it prints as instead of [`MASK`]: a form with the secret part
    /// taken out (a URL without its password), set by the owner.
    shown: Option<String>,
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret {
            value: value.into(),
            shown: None,
        }
    }

    /// The same secret, printed as `shown` (which must not hold it).
    pub fn shown_as(&self, shown: String) -> Self {
        Secret {
            value: self.value.clone(),
            shown: Some(shown),
        }
    }

    /// The value itself: only where it is sent or compared.
    pub fn expose(&self) -> &str {
        &self.value
    }

    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    fn shown(&self) -> &str {
        self.shown.as_deref().unwrap_or(MASK)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.shown())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.shown())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.shown())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
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
