//! The bottom layer both binaries share: how Sobre creates its files and
//! folders (owner-only, whatever the umask), and the `Secret` type that
//! keeps passwords and tokens out of logs, errors and `--print-config`;
//! loading a TOML config file without echoing its text.

pub mod config;
pub mod files;
pub mod secret;

pub use secret::Secret;
