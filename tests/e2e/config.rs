//! A bad configuration stops start-up with a message that names the key
//! and the file, for both binaries.

use sobre_tests::bin;
use std::process::Command;

fn run_with(binary: &str, toml: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, toml).expect("write");
    let out = Command::new(bin(binary))
        .arg("--config")
        .arg(&path)
        .arg("--print-config")
        .output()
        .expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path.display().to_string(),
    )
}

#[test]
fn collector_refuses_unknown_key_naming_key_and_file() {
    let (ok, err, path) = run_with(
        "sobre-collector",
        "[http]\nlisten = \"127.0.0.1:0\"\nlisen = 1\n",
    );
    assert!(!ok);
    assert!(err.contains("lisen") && err.contains(&path), "{err}");
}

#[test]
fn collector_refuses_wrong_type_naming_key_and_file() {
    let (ok, err, path) = run_with("sobre-collector", "[store]\nbatch_max = \"lots\"\n");
    assert!(!ok);
    assert!(err.contains("batch_max") && err.contains(&path), "{err}");
}

#[test]
fn agent_refuses_unknown_key_and_wrong_type() {
    let (ok, err, path) = run_with("sobre-agent", "intervall_ms = 10\n");
    assert!(!ok);
    assert!(err.contains("intervall_ms") && err.contains(&path), "{err}");
    let (ok, err, _) = run_with("sobre-agent", "[spool]\nmax_bytes = -1\n");
    assert!(!ok);
    assert!(err.contains("max_bytes"), "{err}");
}

#[test]
fn print_config_shows_defaults_that_parse_back() {
    for b in ["sobre-collector", "sobre-agent"] {
        let out = Command::new(bin(b))
            .arg("--print-config")
            .output()
            .expect("run");
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (ok, err, _) = run_with(b, &text);
        assert!(ok, "{b} --print-config output does not load back: {err}");
    }
}
