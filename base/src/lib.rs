//! The bottom layer both binaries share: how Sobre creates its files and
//! folders (owner-only, whatever the umask), and the `Secret` type that
//! keeps passwords and tokens out of logs, errors and `--print-config`;
//! loading a TOML config file without echoing its text; signals and
//! logging; calendar dates; MQTT broker URLs and their TLS. What the agent
//! and the collector share lives here, so that neither imports the other.

#[cfg(windows)]
pub mod acl;
pub mod civil;
pub mod config;
pub mod duration;
pub mod files;
pub mod logfile;
pub mod mqtt_url;
pub mod secret;
pub mod shutdown;

pub use secret::Secret;
