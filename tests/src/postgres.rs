//! A real PostgreSQL for the tests: Debian's own server binaries
//! (`/usr/lib/postgresql/<version>/bin`), a throwaway cluster in a temp
//! dir on a free loopback port, trust authentication; `kill9` kills every
//! server process at once, like a crashed machine.

use crate::{free_port, wait_for};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The cluster's superuser and the database `start` creates.
pub const USER: &str = "sobre";
pub const DATABASE: &str = "sobre";

/// How long initdb, a start or a crash recovery may take on a busy machine.
const PATIENCE: Duration = Duration::from_secs(90);

/// A PostgreSQL server. The port and the data stay the same across
/// `kill9`/`restart`, so a collector pointed at `url()` finds it again.
pub struct Postgres {
    pub port: u16,
    /// Where the logs go (`initdb.log`, `postgres.log`).
    dir: PathBuf,
    /// The cluster: its own temp dir, so that it can be handed to the
    /// `postgres` user when the tests run as root (see `RunAs`).
    cluster: tempfile::TempDir,
    bin: PathBuf,
    run_as: Option<RunAs>,
    child: Option<Child>,
}

/// initdb and postgres refuse to run as root (a server that can be made to
/// run code must not hold every right on the machine). When the tests run
/// as root (containers, CI), both run as the `postgres` system user that
/// Debian's package creates: the child switches user itself (std's
/// `Command::uid`/`gid`, which also drops root's supplementary groups)
/// before exec, so the process we hold and kill is the server itself, not
/// a `runuser`/`su` parent that would outlive it or swallow the signal. The
/// cluster's temp dir is given to that user; the logs are opened by us and
/// passed as file descriptors, so the test's own dirs stay private.
#[derive(Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

impl Postgres {
    /// initdb, start, wait until it accepts connections, create
    /// [`DATABASE`]. `dir` receives the logs.
    pub async fn start(dir: &Path) -> Postgres {
        std::fs::create_dir_all(dir).expect("postgres log dir");
        let bin = bin_dir();
        let run_as = run_as();
        let cluster = tempfile::Builder::new()
            .prefix("sobre-pg-")
            .tempdir()
            .expect("cluster temp dir");
        if let Some(r) = run_as {
            std::os::unix::fs::chown(cluster.path(), Some(r.uid), Some(r.gid))
                .expect("give the cluster dir to the postgres user");
        }
        let mut pg = Postgres {
            port: free_port(),
            dir: dir.to_owned(),
            cluster,
            bin,
            run_as,
            child: None,
        };
        let mut initdb = pg.command("initdb");
        initdb
            .arg("-D")
            .arg(pg.data())
            .args(["-U", USER, "--auth=trust", "--no-locale", "-E", "UTF8"])
            // A throwaway cluster: no need to wait for the disk.
            .args(["--no-sync", "--no-instructions"]);
        let log = pg.dir.join("initdb.log");
        let ok = tokio::task::spawn_blocking({
            let log = log.clone();
            move || {
                initdb
                    .stdout(log_file(&log))
                    .stderr(log_file(&log))
                    .stdin(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false)
            }
        })
        .await
        .expect("initdb task");
        assert!(ok, "initdb failed:\n{}", read(&log));
        pg.restart().await;
        pg.create_database(DATABASE).await;
        pg
    }

    /// `postgres://sobre@127.0.0.1:<port>/sobre`.
    pub fn url(&self) -> String {
        self.url_for(DATABASE)
    }

    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates another database (e.g. one per collector group in a test).
    pub async fn create_database(&self, name: &str) {
        let mut cmd = self.client_command("createdb");
        cmd.arg(name);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("createdb task")
            .expect("run createdb");
        assert!(
            out.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server on its port and data and waits until it accepts
    /// connections (after a `kill9`, that includes crash recovery).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "postgres already running");
        self.spawn();
        wait_for("PostgreSQL to accept connections", PATIENCE, || {
            let ready = self.poll_ready();
            async move { ready }
        })
        .await;
    }

    /// SIGKILL to the postmaster and every backend, like a power cut for
    /// the processes; committed data is in the WAL, which the next start
    /// replays. The backends are not in the postmaster's process group
    /// (each calls setsid), so the postmaster is stopped first (it cannot
    /// fork while we list its children), then each is killed by its pid.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pm = c.id();
            signal("STOP", &[pm]);
            let mut pids = children(pm);
            pids.push(pm);
            signal("KILL", &pids);
            c.wait().expect("reap postgres");
        }
    }

    /// Fast shutdown (SIGINT: backends end, the postmaster waits for them
    /// and exits), bounded; then kill9 if it is still running.
    pub fn stop(&mut self) {
        let Some(c) = self.child.as_mut() else {
            return;
        };
        signal("INT", &[c.id()]);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            match c.try_wait() {
                Ok(Some(_)) => {
                    self.child = None;
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        self.kill9();
    }

    pub fn log(&self) -> String {
        read(&self.dir.join("postgres.log"))
    }

    fn data(&self) -> PathBuf {
        self.cluster.path().join("data")
    }

    /// A server binary, run as the right user, from the cluster's dir (a
    /// dropped-privilege child may not enter ours).
    fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        cmd.current_dir(self.cluster.path());
        if let Some(r) = self.run_as {
            cmd.uid(r.uid).gid(r.gid);
        }
        cmd
    }

    /// A client binary (createdb, pg_isready) against this server.
    fn client_command(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER]);
        cmd
    }

    fn spawn(&mut self) {
        let log = self.dir.join("postgres.log");
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(self.data())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", &format!("port={}", self.port)])
            // TCP only: no socket file in a dir we would have to share.
            .args(["-c", "unix_socket_directories="])
            // A process kill keeps what was written (the OS has it); only
            // an OS crash needs fsync, which tests do not simulate.
            .args(["-c", "fsync=off"])
            .stdout(log_file(&log))
            .stderr(log_file(&log))
            .stdin(Stdio::null())
            // Its own process group: a Ctrl-C at the terminal running the
            // tests is for the tests, not a shutdown request to postgres.
            .process_group(0);
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}")),
        );
    }

    /// One readiness check. A server that exited is started again: right
    /// after a kill9 the old backends may still hold the shared memory for
    /// a moment, and postgres then refuses to start (and says so in its
    /// log); a server that never comes up ends in the caller's timeout.
    fn poll_ready(&mut self) -> Option<()> {
        let exited = match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(_))) => true,
            Some(Ok(None)) => false,
            Some(Err(e)) => panic!("postgres status: {e}"),
            None => panic!("postgres is not running"),
        };
        if exited {
            self.child = None;
            self.spawn();
            return None;
        }
        let mut isready = self.client_command("pg_isready");
        isready.args(["-d", "postgres", "-t", "2"]);
        let ok = isready
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then_some(())
    }
}

impl Drop for Postgres {
    /// A clean stop: the postmaster reaps its own backends, so none is
    /// left for init to collect.
    fn drop(&mut self) {
        self.stop();
    }
}

/// The newest installed server: `/usr/lib/postgresql/<version>/bin`.
fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let version =
        |name: &str| -> Option<Vec<u32>> { name.split('.').map(|p| p.parse().ok()).collect() };
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let bin = e.path().join("bin");
            let complete = bin.join("postgres").exists() && bin.join("initdb").exists();
            complete.then_some((version(&name)?, bin))
        })
        .max()
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| {
            panic!(
                "no PostgreSQL server under {}: apt-get install postgresql (tests/run does it)",
                root.display()
            )
        })
}

/// Who initdb and postgres run as: ourselves, or `postgres` when we are root.
fn run_as() -> Option<RunAs> {
    if id(&["-u"]) != 0 {
        return None;
    }
    Some(RunAs {
        uid: id(&["-u", "postgres"]),
        gid: id(&["-g", "postgres"]),
    })
}

/// `id ARGS` as a number; panics with the reason.
fn id(args: &[&str]) -> u32 {
    let out = Command::new("id")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run id: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| {
            panic!(
                "id {}: {} (running as root, the tests need the `postgres` user that Debian's postgresql package creates)",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })
}

/// `kill -SIG PIDS` (kill(1): the workspace has no unsafe code).
fn signal(sig: &str, pids: &[u32]) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(u32::to_string))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{sig} {pids:?} failed");
}

/// The pids whose parent is `parent`, from `/proc/<pid>/stat` (the 4th
/// field, after the command name in parentheses).
fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|st| {
                    let rest = &st[st.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

fn log_file(path: &Path) -> File {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("log file {}: {e}", path.display()))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
