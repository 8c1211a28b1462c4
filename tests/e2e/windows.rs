//! The Windows agent, `sobre-agent.exe` cross-built by
//! `agent/windows/build`, run under Wine against a Linux collector on
//! loopback: over MQTT and gRPC every seq stored once, an inventory that
//! says Windows, samples with CPU and memory; killed mid-stream and
//! restarted, nothing lost, nothing doubled. As a service, installed,
//! upgraded and removed through Wine's service manager. And its unit
//! tests, run under Wine. Where Wine cannot stand in for Windows (WTS
//! sessions, SMBIOS, batteries), unit tests over recorded inputs
//! cover the parsing, and ARCHITECTURE.md says how a real Windows check
//! runs.

use crate::PATIENCE;
use sobre_tests::{Agent, AgentOpts, Collector, CollectorOpts, Transport, wait_for, wine};

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
    let mut pfx = wine::Prefix::copy_of_shared(&dir.path().join("wineprefix"));
    pfx.keep_alive();
    // The test aid goes where the service's binary will be.
    let installed = pfx.drive_c().join("Program Files/Sobre");
    std::fs::create_dir_all(&installed).expect("mkdir");
    std::fs::copy(wine::shim_dll(), installed.join("bcryptprimitives.dll")).expect("shim");
    let state = pfx.drive_c().join("ProgramData/Sobre");
    let service = |args: &[&str]| {
        let mut cmd = pfx.command(wine::agent_exe());
        cmd.arg("service").args(args);
        let (ok, out, err) = pfx.run(cmd);
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
    // As the service manager keeps it (Wine's `sc` has no `qc`): started
    // at boot (Start = 2), with its config.
    let key = r"HKLM\System\CurrentControlSet\Services\SobreAgent";
    let mut reg = pfx.command("reg");
    reg.args(["query", key]);
    let (_, reg, _) = pfx.run(reg);
    let start = reg
        .lines()
        .any(|l| l.split_whitespace().eq(["Start", "REG_DWORD", "0x2"]));
    assert!(start, "{reg}");
    assert!(reg.contains(r"agent.toml service run"), "{reg}");

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
    let log = std::fs::read_to_string(state.join("agent.log")).expect("the service's log");
    assert!(log.contains("stop asked by the service manager"), "{log}");
    assert!(log.contains("agent stopped"), "{log}");
    let mut query = pfx.command("reg");
    query.args(["query", key]);
    let (registered, _, _) = pfx.run(query);
    assert!(!registered, "the service's key is gone");

    let said = service(&["uninstall", "--purge"]);
    assert!(!state.exists(), "purged: {said}");
}
