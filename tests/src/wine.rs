//! Running the Windows agent under Wine: where `agent/windows/build` put
//! `sobre-agent.exe`, the Wine prefix the tests share, and Linux paths as
//! the agent sees them (Wine maps `/` to drive `Z:`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace's root (this crate is `tests/`).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// `SOBRE_WINDOWS_TARGET_DIR` (as `agent/windows/build` takes it), else
/// `target/windows`, then the target triple.
fn out_dir() -> PathBuf {
    let base = std::env::var_os("SOBRE_WINDOWS_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/windows"));
    let base = if base.is_absolute() {
        base
    } else {
        workspace().join(base)
    };
    base.join("x86_64-pc-windows-gnu")
}

/// Whether the Windows build and Wine are here; `tests/run` builds the
/// former and installs the latter, and sets `SOBRE_WINE_TESTS=1` so that
/// a missing piece fails instead of skipping.
pub fn available() -> bool {
    let here = agent_exe_path().exists() && Path::new(WINE).exists();
    if !here && std::env::var_os("SOBRE_WINE_TESTS").is_some() {
        panic!(
            "SOBRE_WINE_TESTS is set but {} or {WINE} is missing: run agent/windows/build",
            agent_exe_path().display()
        );
    }
    here
}

const WINE: &str = "/usr/lib/wine/wine64";

fn agent_exe_path() -> PathBuf {
    out_dir().join("release/sobre-agent.exe")
}

/// `sobre-agent.exe`, built by `agent/windows/build`.
pub fn agent_exe() -> PathBuf {
    let p = agent_exe_path();
    assert!(
        p.exists(),
        "{} is missing: run agent/windows/build",
        p.display()
    );
    p
}

/// The unit-test executables `agent/windows/build --tests` listed.
pub fn unit_tests() -> Vec<PathBuf> {
    std::fs::read_to_string(out_dir().join("unit-tests.list"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// A command running `exe` under Wine, in the shared prefix
/// (`target/windows/wineprefix`, created on first use), Wine's own
/// messages off.
pub fn command(exe: &Path) -> Command {
    let prefix = out_dir()
        .parent()
        .expect("windows target dir")
        .join("wineprefix");
    let mut c = Command::new(WINE);
    c.arg(exe)
        .env("WINEPREFIX", prefix)
        .env("WINEDEBUG", "-all")
        .env("WINEDLLOVERRIDES", "mscoree,mshtml=");
    c
}

/// `p` (absolute) as Wine's `Z:` drive path.
pub fn path(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}
