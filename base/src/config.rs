//! Loading a TOML config file, for both binaries: unknown keys and wrong
//! types named with their line and column, then validated once. An error
//! never quotes the file's text: a line with a syntax error may hold a
//! password (issue #21: `toml`'s own message shows the offending line).

use std::path::{Path, PathBuf};

/// Why a configuration file could not be used (agent and collector).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}:\n{message}\nSee {example} for every key and its default.")]
    Parse {
        path: PathBuf,
        message: String,
        example: &'static str,
    },
    #[error("invalid config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Parses TOML text; the error says where (line, column) and what, and
/// never shows the text itself.
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    toml::from_str(text).map_err(|e| describe(text, &e))
}

/// Reads a TOML config file, parses it and validates it once.
pub fn load_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    example: &'static str,
    validate: impl FnOnce(&T) -> Result<(), String>,
) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let cfg: T = parse_toml(&text).map_err(|message| ConfigError::Parse {
        path: path.to_owned(),
        message,
        example,
    })?;
    validate(&cfg).map_err(|message| ConfigError::Invalid {
        path: path.to_owned(),
        message,
    })?;
    Ok(cfg)
}

/// `line L, column C: message`, with the key of that line named. The
/// value is never quoted: a quoted string in the parser's message (`string
/// "…"`) is cut out, as is the snippet of the line that `toml` shows.
fn describe(text: &str, e: &toml::de::Error) -> String {
    let msg = without_quoted(e.message().trim_end());
    let Some(span) = e.span() else {
        return msg;
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let key = text
        .lines()
        .nth(line - 1)
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim())
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.\"' ".contains(c))
        });
    match key {
        Some(k) => format!("line {line}, column {col}, key {k}: {msg}"),
        None => format!("line {line}, column {col}: {msg}"),
    }
}

/// `invalid type: string "hunter2", expected u64` → `… string "…", …`.
fn without_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    for c in msg.chars() {
        if c == '"' {
            if inside {
                out.push('…');
            }
            inside = !inside;
            out.push(c);
        } else if !inside {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        password: Option<String>,
        port: Option<u16>,
    }

    #[test]
    fn a_syntax_error_no_longer_echoes_the_line_and_its_secret() {
        for text in [
            "password = \"hunter2",
            "password = hunter2",
            "\n\npassword = 'hunter2' x",
        ] {
            let e = parse_toml::<Cfg>(text).expect_err(text);
            assert!(!e.contains("hunter2"), "{text:?}: {e}");
            assert!(e.contains("line "), "{e}");
        }
        let e = parse_toml::<Cfg>("\nport = 70000").expect_err("range");
        assert!(e.starts_with("line 2, column 8, key port:"), "{e}");
        let e = parse_toml::<Cfg>("port = \"hunter2\"").expect_err("type");
        assert!(!e.contains("hunter2") && e.contains("key port"), "{e}");
        let e = parse_toml::<Cfg>("passwrd = 1").expect_err("unknown");
        assert!(e.contains("passwrd"), "the unknown key is named: {e}");
    }
}
