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

/// What `agent/windows/package` made, `sobre-agent-<version>-windows-x86_64.<ext>`
/// (`zip` or `msi`; the workspace's version, this crate's too), if it is
/// there.
pub fn package(ext: &str) -> Option<PathBuf> {
    let name = format!(
        "sobre-agent-{}-windows-x86_64.{ext}",
        env!("CARGO_PKG_VERSION")
    );
    let file = out_dir().parent()?.join(name);
    file.exists().then_some(file)
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
    in_prefix(&shared_prefix(), exe)
}

fn shared_prefix() -> PathBuf {
    out_dir()
        .parent()
        .expect("windows target dir")
        .join("wineprefix")
}

/// `program` under Wine in `prefix`, Wine's own messages off.
fn in_prefix(prefix: &Path, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(WINE);
    c.arg(program)
        .env("WINEPREFIX", prefix)
        .env("WINEDEBUG", "-all")
        .env("WINEDLLOVERRIDES", "mscoree,mshtml=");
    c
}

/// `p` (absolute) as Wine's `Z:` drive path.
pub fn path(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}

/// The test aid that gives Wine 8 the `ProcessPrng` Rust's std needs
/// (`agent/windows/wine/`; real Windows has it): beside any copy of the
/// .exe that Wine is to run.
pub fn shim_dll() -> PathBuf {
    out_dir().join("release/bcryptprimitives.dll")
}

/// A Wine prefix of a test's own, copied from the shared one: for a test
/// that changes the machine (installs a service). Its Wine processes are
/// ended when it is dropped.
pub struct Prefix {
    path: PathBuf,
    keep_alive: Option<std::process::Child>,
}

impl Prefix {
    /// A copy of the shared prefix at `path` (`tests/run` made the shared
    /// one; a copy takes about a second).
    pub fn copy_of_shared(path: &Path) -> Prefix {
        let shared = shared_prefix();
        let ok = Command::new("cp")
            .arg("-a")
            .arg(&shared)
            .arg(path)
            .status()
            .expect("cp");
        assert!(ok.success(), "cannot copy {}", shared.display());
        Prefix {
            path: path.to_owned(),
            keep_alive: None,
        }
    }

    /// The prefix's `C:`.
    pub fn drive_c(&self) -> PathBuf {
        self.path.join("drive_c")
    }

    /// `program` (a path, or a Windows command such as `sc`) under Wine
    /// in this prefix.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        in_prefix(&self.path, program)
    }

    /// Runs `c` (made by [`Prefix::command`]) to its end: success, stdout,
    /// stderr. Through files, not pipes: a Wine process it starts (the
    /// service manager, a service) may inherit them and live on, and a
    /// pipe would then never end.
    pub fn run(&self, c: Command) -> (bool, String, String) {
        let (code, out, err) = self.run_code(c);
        (code == Some(0), out, err)
    }

    /// As [`Prefix::run`], with the exit code (None if killed).
    pub fn run_code(&self, mut c: Command) -> (Option<i32>, String, String) {
        let out = self.path.with_extension("stdout");
        let err = self.path.with_extension("stderr");
        let file = |p: &Path| std::fs::File::create(p).expect("output file");
        let status = c
            .stdin(std::process::Stdio::null())
            .stdout(file(&out))
            .stderr(file(&err))
            .status()
            .expect("run under Wine");
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        (status.code(), read(&out), read(&err))
    }

    /// Keeps the prefix's Wine running: Wine ends its services when the
    /// last other process of the prefix exits (Windows would not). A
    /// `cmd` that waits on its input, until the prefix is dropped.
    pub fn keep_alive(&mut self) {
        let child = self
            .command("cmd")
            .arg("/k")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("wine cmd");
        self.keep_alive = Some(child);
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        if let Some(mut c) = self.keep_alive.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("/usr/lib/wine/wineserver")
            .arg("-k")
            .env("WINEPREFIX", &self.path)
            .status();
    }
}
