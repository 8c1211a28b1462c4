//! The Windows agent, `sobre-agent.exe` cross-built by
//! `agent/windows/build`, run under Wine against a Linux collector on
//! loopback: over MQTT and gRPC every seq stored once, an inventory that
//! says Windows, samples with CPU and memory; killed mid-stream and
//! restarted, nothing lost, nothing doubled. As a service, installed,
//! upgraded and removed through Wine's service manager, from the
//! command line, the zip's install.cmd and the .msi. And its unit
//! tests, run under Wine. Where Wine cannot stand in for Windows (WTS
//! sessions, SMBIOS, batteries), unit tests over recorded inputs
//! cover the parsing, and ARCHITECTURE.md says how a real Windows check
//! runs.

use crate::PATIENCE;
use sobre_tests::{Agent, AgentOpts, Collector, CollectorOpts, Transport, wait_for, wine};
use std::path::{Path, PathBuf};

async fn reports_once_through_a_kill(t: Transport, id: &str) {
    if !wine::available() {
        eprintln!("skipped: no Windows build or no Wine (tests/run provides both)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(&dir.path().join("collector"), CollectorOpts::default()).await;
    let mut opts = AgentOpts::new(id, t);
    opts.windows = true;
    opts.interval_ms = 200;
    let mut agent = Agent::start(&dir.path().join("agent"), &opts, c.mqtt, c.grpc);
    let first = c.wait_samples(&agent.id, 10, PATIENCE).await;
    assert!(!first.is_empty(), "{}", agent.log());
    // Killed mid-stream: whatever was spooled and not acked is sent again
    // after the restart, and stored once.
    agent.kill9();
    agent.restart();
    let before = c.sample_seqs(&agent.id).await.len();
    let seqs = c.wait_samples(&agent.id, before + 10, PATIENCE).await;
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "unique, increasing: {seqs:?}"
    );
    // One gap at most per start: the inventory each start sends takes a
    // seq between samples.
    let gaps: Vec<_> = seqs.windows(2).filter(|w| w[1] != w[0] + 1).collect();
    assert!(
        gaps.len() <= 2 && gaps.iter().all(|w| w[1] == w[0] + 2),
        "gaps {gaps:?}\n{}",
        agent.log()
    );

    let inv = wait_for("the Windows inventory", PATIENCE, || async {
        let v = c.get(&format!("/api/v1/agents/{}", agent.id)).await;
        let os = v
            .pointer("/inventory/os_name")
            .and_then(|o| o.as_str())
            .unwrap_or("");
        os.contains("Windows").then(|| v["inventory"].clone())
    })
    .await;
    assert!(inv["cpu_threads"].as_u64().unwrap_or(0) >= 1, "{inv}");
    assert!(inv["mem_total_bytes"].as_u64().unwrap_or(0) > 0, "{inv}");
    let samples = c.samples(&agent.id).await;
    let mem = |s: &serde_json::Value, k: &str| s[k].as_u64().unwrap_or(0);
    assert!(
        samples
            .iter()
            .all(|s| mem(s, "mem_total_bytes") > 0 && mem(s, "mem_available_bytes") > 0),
        "{samples:?}"
    );
    // CPU > 0 in some sample (one 200 ms interval may be idle; the first
    // of each start has no previous reading).
    assert!(
        samples
            .iter()
            .any(|s| s["cpu_percent"].as_f64().unwrap_or(0.0) > 0.0),
        "{samples:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_agent_under_wine_reports_once_over_mqtt_through_a_kill() {
    reports_once_through_a_kill(Transport::Mqtt, "win-mqtt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_agent_under_wine_reports_once_over_grpc_through_a_kill() {
    reports_once_through_a_kill(Transport::Grpc, "win-grpc").await;
}

/// `sobre-agent.exe once` prints the same JSON shape as on Linux: the
/// same keys at every level of the inventory and the usage.
#[test]
fn windows_agent_once_prints_the_linux_shape() {
    if !wine::available() {
        eprintln!("skipped: no Windows build or no Wine (tests/run provides both)");
        return;
    }
    let run = |mut c: std::process::Command| -> serde_json::Value {
        let out = c.arg("once").output().expect("run once");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let win = run(wine::command(&wine::agent_exe()));
    let linux = run(std::process::Command::new(sobre_tests::bin("sobre-agent")));
    fn keys(v: &serde_json::Value, at: &str, out: &mut Vec<String>) {
        if let Some(o) = v.as_object() {
            for (k, v) in o {
                out.push(format!("{at}/{k}"));
                keys(v, &format!("{at}/{k}"), out);
            }
        }
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    keys(&win, "", &mut a);
    keys(&linux, "", &mut b);
    // Lists (disks, monitors, power parts) may differ in length: only
    // object keys are compared.
    assert_eq!(a, b, "Windows:\n{win:#}\nLinux:\n{linux:#}");
    assert!(
        win["inventory"]["os_name"]
            .as_str()
            .unwrap_or("")
            .contains("Windows"),
        "{win:#}"
    );
}

/// The agent's unit tests, cross-built, run under Wine: every one that is
/// not Linux-specific passes on Windows.
#[test]
fn windows_agent_unit_tests_pass_under_wine() {
    if !wine::available() {
        eprintln!("skipped: no Windows build or no Wine (tests/run provides both)");
        return;
    }
    let tests = wine::unit_tests();
    if tests.is_empty() && std::env::var_os("SOBRE_WINE_TESTS").is_some() {
        panic!("no unit-test executables listed: run agent/windows/build --tests");
    }
    for t in tests {
        let out = wine::command(&t)
            .arg("--test-threads=2")
            .output()
            .expect("run unit tests");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{} under Wine:\n{text}\n{}",
            t.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("test result: ok"), "{text}");
    }
}

/// A Wine prefix of a test's own, kept running (as Windows would: see
/// [`wine::Prefix::keep_alive`]), with the test aid where the service's
/// binary goes; where an install puts things.
struct Machine {
    pfx: wine::Prefix,
    /// `C:\Program Files\Sobre`
    installed: PathBuf,
    /// `C:\ProgramData\Sobre`
    state: PathBuf,
}

const SERVICE_KEY: &str = r"HKLM\System\CurrentControlSet\Services\SobreAgent";

impl Machine {
    fn new(at: &Path) -> Machine {
        let mut pfx = wine::Prefix::copy_of_shared(at);
        pfx.keep_alive();
        let installed = pfx.drive_c().join("Program Files/Sobre");
        std::fs::create_dir_all(&installed).expect("mkdir");
        std::fs::copy(wine::shim_dll(), installed.join("bcryptprimitives.dll")).expect("shim");
        let state = pfx.drive_c().join("ProgramData/Sobre");
        Machine {
            pfx,
            installed,
            state,
        }
    }

    /// The service's registry key as `reg query` lists it, if it is there
    /// (Wine's `sc` has no `qc`).
    fn service_key(&self) -> Option<String> {
        let mut reg = self.pfx.command("reg");
        reg.args(["query", SERVICE_KEY]);
        let (there, out, _) = self.pfx.run(reg);
        there.then_some(out)
    }

    /// Registered as the install does it: started at boot (Start = 2),
    /// with its config.
    fn assert_registered(&self) {
        let reg = self.service_key().expect("the service's key");
        let start = reg
            .lines()
            .any(|l| l.split_whitespace().eq(["Start", "REG_DWORD", "0x2"]));
        assert!(start, "{reg}");
        assert!(reg.contains(r"agent.toml service run"), "{reg}");
    }

    /// The installed agent stopped through the service manager: it
    /// drained and said so in its log.
    fn assert_stopped_cleanly(&self) {
        let log = std::fs::read_to_string(self.state.join("agent.log")).expect("the service's log");
        assert!(log.contains("stop asked by the service manager"), "{log}");
        assert!(log.contains("agent stopped"), "{log}");
        assert!(self.service_key().is_none(), "the service's key is gone");
    }
}

/// The agent as a Windows service, under Wine's service manager: installed
/// from MSI-like properties (as a GPO or SCCM passes them), started by the
/// service manager, reporting; installed again as an upgrade (the config
/// kept, the service restarted); stopped through the service manager (the
/// agent drains and says so in its log) and removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_agent_runs_as_a_service_installed_from_properties() {
    if !wine::available() {
        eprintln!("skipped: no Windows build or no Wine (tests/run provides both)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(&dir.path().join("collector"), CollectorOpts::default()).await;
    let m = Machine::new(&dir.path().join("wineprefix"));
    let (installed, state) = (&m.installed, &m.state);
    let service = |args: &[&str]| {
        let mut cmd = m.pfx.command(wine::agent_exe());
        cmd.arg("service").args(args);
        let (ok, out, err) = m.pfx.run(cmd);
        assert!(ok, "service {args:?}:\n{out}\n{err}");
        out
    };
    let collector = format!("COLLECTOR=mqtt://127.0.0.1:{}", c.mqtt);
    let install = |extra: &str| {
        service(&[
            "install",
            &collector,
            "AGENT_ID=win-service",
            "GROUP=mairie",
            extra,
        ])
    };
    let said = install("SITE=hotel-de-ville");
    assert!(said.contains("registered the SobreAgent service"), "{said}");
    assert!(said.contains("started"), "{said}");
    assert!(installed.join("sobre-agent.exe").exists(), "{said}");
    let toml = std::fs::read_to_string(state.join("agent.toml")).expect("agent.toml");
    assert!(
        toml.contains(&format!("mqtt://127.0.0.1:{}", c.mqtt)),
        "{toml}"
    );

    // Started by the service manager, not by us: it reports.
    c.wait_samples("win-service", 1, PATIENCE).await;
    let agent = c.get("/api/v1/agents/win-service").await;
    assert_eq!(agent["inventory"]["group"], "mairie", "{agent}");
    m.assert_registered();

    // Installed again: an upgrade. The config stays; the service is
    // stopped for the new binary and started again, and goes on.
    let said = install("GROUP=other");
    assert!(said.contains("kept") && said.contains("stopping"), "{said}");
    assert_eq!(
        std::fs::read_to_string(state.join("agent.toml")).expect("agent.toml"),
        toml
    );
    let before = c.sample_seqs("win-service").await.len();
    let seqs = c.wait_samples("win-service", before + 1, PATIENCE).await;
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "stored once: {seqs:?}"
    );

    let said = service(&["uninstall"]);
    assert!(said.contains("removed the SobreAgent service"), "{said}");
    assert!(said.contains("kept"), "the state stays: {said}");
    assert!(!installed.join("sobre-agent.exe").exists(), "{said}");
    m.assert_stopped_cleanly();

    let said = service(&["uninstall", "--purge"]);
    assert!(!state.exists(), "purged: {said}");
}

/// What `agent/windows/package` made (`zip` or `msi`); None (and the
/// test skips) without it or Wine, unless `tests/run` made them.
fn packaged(ext: &str) -> Option<PathBuf> {
    if !wine::available() {
        eprintln!("skipped: no Windows build or no Wine (tests/run provides both)");
        return None;
    }
    let p = wine::package(ext);
    if p.is_none() {
        assert!(
            std::env::var_os("SOBRE_WINE_TESTS").is_none(),
            "SOBRE_WINE_TESTS is set but there is no .{ext}: run agent/windows/package"
        );
        eprintln!("skipped: no .{ext} (agent/windows/package makes it)");
    }
    p
}

/// The zip `agent/windows/package` makes, rolled out as a GPO startup
/// script or SCCM would: unzipped, `install.cmd` with properties. Wrong
/// ones are refused with the reason and a non-zero exit code, leaving no
/// service, binary or config; right ones install the service, which
/// reports; `uninstall.cmd` removes it, `--purge` the state too. What
/// `install.cmd` did is in `install.log`, without the properties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_agent_installs_from_the_zip_with_install_cmd() {
    let Some(zip) = packaged("zip") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(&dir.path().join("collector"), CollectorOpts::default()).await;
    let m = Machine::new(&dir.path().join("wineprefix"));
    let unzipped = m.pfx.drive_c().join("sobre-zip");
    let ok = std::process::Command::new("unzip")
        .arg("-q")
        .arg(&zip)
        .arg("-d")
        .arg(&unzipped)
        .status()
        .expect("unzip");
    assert!(ok.success(), "unzip {}", zip.display());
    let mut names: Vec<String> = std::fs::read_dir(&unzipped)
        .expect("unzipped")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let want = [
        "README.txt",
        "agent.example.toml",
        "install.cmd",
        "sobre-agent.exe",
        "uninstall.cmd",
    ];
    assert_eq!(names, want);
    for text in ["install.cmd", "uninstall.cmd", "README.txt"] {
        let b = std::fs::read(unzipped.join(text)).expect("read");
        let lf = b.iter().filter(|&&c| c == b'\n').count();
        let crlf = b.windows(2).filter(|w| w == b"\r\n").count();
        assert!(lf > 0 && lf == crlf, "{text}: CRLF line endings");
    }
    std::fs::copy(wine::shim_dll(), unzipped.join("bcryptprimitives.dll")).expect("shim");
    let script = |name: &str, args: &[&str]| {
        let mut cmd = m.pfx.command("cmd");
        cmd.arg("/c")
            .arg(format!(r"C:\sobre-zip\{name}"))
            .args(args);
        let (code, out, err) = m.pfx.run_code(cmd);
        (code, format!("{out}{err}"))
    };
    let collector = format!("COLLECTOR=mqtt://127.0.0.1:{}", c.mqtt);

    let refused: [(&[&str], &str); 3] = [
        (&[&collector, "COLECTOR=x"], "unknown property \"COLECTOR\""),
        (&["GROUP=mairie"], "COLLECTOR= is missing"),
        (&["COLLECTOR=mqtts://127.0.0.1:8883"], "ca_file"),
    ];
    for (args, reason) in refused {
        let (code, said) = script("install.cmd", args);
        assert!(code.is_some_and(|c| c != 0), "{args:?}: {code:?}\n{said}");
        assert!(said.contains(reason), "{args:?}:\n{said}");
        assert!(!m.installed.join("sobre-agent.exe").exists(), "{args:?}");
        assert!(!m.state.join("agent.toml").exists(), "{args:?}");
        assert!(m.service_key().is_none(), "{args:?}");
    }

    let (code, said) = script(
        "install.cmd",
        &[&collector, "AGENT_ID=win-zip", "GROUP=mairie"],
    );
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("registered the SobreAgent service"), "{said}");
    c.wait_samples("win-zip", 1, PATIENCE).await;
    let agent = c.get("/api/v1/agents/win-zip").await;
    assert_eq!(agent["inventory"]["group"], "mairie", "{agent}");
    m.assert_registered();
    let log = std::fs::read_to_string(m.state.join("install.log")).expect("install.log");
    assert_eq!(log.matches("==== exit code 0").count(), 1, "{log}");
    assert_eq!(log.matches("==== exit code 1").count(), 3, "{log}");
    assert!(log.contains("COLLECTOR= is missing"), "{log}");
    assert!(!log.contains("AGENT_ID=win-zip"), "no properties: {log}");

    let (code, said) = script("uninstall.cmd", &[]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("removed the SobreAgent service"), "{said}");
    assert!(!m.installed.join("sobre-agent.exe").exists(), "{said}");
    m.assert_stopped_cleanly();
    let (code, said) = script("uninstall.cmd", &["--purge"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(!m.state.exists(), "purged: {said}");
}

/// The .msi `agent/windows/package` makes, as SCCM runs it (`msiexec /i …
/// /qn` and properties, from a script). A wrong COLLECTOR makes the
/// agent refuse, and Windows Installer rolls back: no binary, no
/// service. Right properties install the agent (a value with spaces
/// included), which reports, and a product Programs and Features lists;
/// `msiexec /x` removes the service and the binary and keeps the state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_agent_installs_from_the_msi() {
    let Some(msi) = packaged("msi") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(&dir.path().join("collector"), CollectorOpts::default()).await;
    let m = Machine::new(&dir.path().join("wineprefix"));
    std::fs::copy(&msi, m.pfx.drive_c().join("sobre.msi")).expect("copy the msi");
    // A script, as an admin or SCCM writes the command line: Wine's
    // msiexec then sees it as Windows' would.
    let msiexec = |line: &str| {
        let script = m.pfx.drive_c().join("msi.cmd");
        let body = format!("@echo off\r\nmsiexec {line}\r\nexit /b %ERRORLEVEL%\r\n");
        std::fs::write(&script, body).expect("msi.cmd");
        let mut cmd = m.pfx.command("cmd");
        cmd.args(["/c", r"C:\msi.cmd"]);
        let (code, out, err) = m.pfx.run_code(cmd);
        (code, format!("{out}{err}"))
    };

    let (code, said) = msiexec(r"/i C:\sobre.msi /qn COLLECTOR=ftp://x GROUP=mairie");
    assert!(code.is_some_and(|c| c != 0), "{code:?}\n{said}");
    assert!(!m.installed.join("sobre-agent.exe").exists(), "rolled back");
    assert!(m.service_key().is_none(), "rolled back");

    let (code, said) = msiexec(&format!(
        r#"/i C:\sobre.msi /qn COLLECTOR=mqtt://127.0.0.1:{} AGENT_ID=win-msi GROUP=mairie SITE="Hotel de ville""#,
        c.mqtt
    ));
    assert_eq!(code, Some(0), "{said}");
    c.wait_samples("win-msi", 1, PATIENCE).await;
    let agent = c.get("/api/v1/agents/win-msi").await;
    assert_eq!(agent["inventory"]["group"], "mairie", "{agent}");
    assert_eq!(agent["inventory"]["site"], "Hotel de ville", "{agent}");
    m.assert_registered();
    let mut reg = m.pfx.command("reg");
    reg.args([
        "query",
        r"HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall",
        "/s",
    ]);
    let (_, products, _) = m.pfx.run(reg);
    assert!(products.contains("Sobre agent"), "{products}");

    let (code, said) = msiexec(r"/x C:\sobre.msi /qn");
    assert_eq!(code, Some(0), "{said}");
    assert!(!m.installed.join("sobre-agent.exe").exists(), "{said}");
    m.assert_stopped_cleanly();
    assert!(m.state.join("agent.toml").exists(), "the state stays");
}
