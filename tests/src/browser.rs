//! A page of Sobre's checked in a real browser: runs
//! `tests/browser/check-page.mjs` (headless Debian Chromium driven by
//! playwright-core, axe-core for accessibility) and turns its JSON verdict
//! into a list of readable problems a test can assert is empty.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the browser saw at one viewport width.
#[derive(Debug, Clone, Deserialize)]
pub struct Viewport {
    /// `phone` (360×740, mobile emulation), `desktop` (1280×900), or
    /// `phone-nojs` (the phone with JavaScript disabled; no axe pass).
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// Whether JavaScript was enabled.
    #[serde(default = "yes")]
    pub javascript: bool,
    /// HTTP status of the page itself, if it loaded.
    pub status: Option<u16>,
    /// Why the page did not load, if it did not.
    pub load_error: Option<String>,
    /// `console.error` messages and uncaught exceptions.
    pub console_errors: Vec<String>,
    /// Requests to an origin other than the page's (refused by the checker).
    pub third_party_requests: Vec<String>,
    /// Requests that failed or were answered with an HTTP error.
    pub failed_requests: Vec<String>,
    /// Bytes transferred (headers and bodies) for the page and everything it loaded.
    pub bytes: u64,
    /// The document is wider than the viewport: on a phone, unreadable.
    pub horizontal_overflow: bool,
    pub scroll_width: Option<u32>,
    /// axe-core violations of impact serious or critical.
    pub violations: Vec<Violation>,
    /// Links, buttons and fields that Tab never reaches (desktop pass).
    #[serde(default)]
    pub unreachable_by_keyboard: Vec<String>,
    /// The full-page PNG saved, when screenshots were asked for.
    #[serde(default)]
    pub screenshot: Option<PathBuf>,
}

fn yes() -> bool {
    true
}

/// One axe-core rule the page breaks, and where.
#[derive(Debug, Clone, Deserialize)]
pub struct Violation {
    pub id: String,
    pub impact: String,
    pub help: String,
    /// CSS selector and start of the HTML of each offending element.
    pub nodes: Vec<String>,
}

/// The checker's verdict on one page, at every viewport.
#[derive(Debug, Clone, Deserialize)]
pub struct PageCheck {
    pub url: String,
    pub max_bytes: Option<u64>,
    /// The checker's own verdict (its exit status 0).
    pub ok: bool,
    pub viewports: Vec<Viewport>,
}

impl PageCheck {
    /// Every problem found, one readable line each, prefixed with the
    /// viewport's name; empty when the page passes every check.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for v in &self.viewports {
            let mut add =
                |what: String| out.push(format!("{} {}x{}: {what}", v.name, v.width, v.height));
            if let Some(e) = &v.load_error {
                add(format!("page did not load: {e}"));
            }
            match v.status {
                Some(s) if s < 400 => {}
                Some(s) => add(format!("page answered HTTP {s}")),
                None if v.load_error.is_none() => add("page gave no HTTP response".into()),
                None => {}
            }
            for e in &v.console_errors {
                add(format!("console error: {e}"));
            }
            for r in &v.third_party_requests {
                add(format!("third-party request: {r}"));
            }
            for r in &v.failed_requests {
                add(format!("failed request: {r}"));
            }
            if let Some(max) = self.max_bytes.filter(|&m| v.bytes > m) {
                add(format!("weighs {} bytes, over the {max} allowed", v.bytes));
            }
            if v.horizontal_overflow {
                add(format!(
                    "overflows horizontally: {} px wide in a {} px viewport",
                    v.scroll_width.unwrap_or(0),
                    v.width
                ));
            }
            for el in &v.unreachable_by_keyboard {
                add(format!("not reachable with the keyboard (Tab): {el}"));
            }
            for a in &v.violations {
                add(format!(
                    "accessibility ({}) {}: {} at {}",
                    a.impact,
                    a.id,
                    a.help,
                    a.nodes.join(" | ")
                ));
            }
        }
        // The checker and this reading of its output must agree.
        if !self.ok && out.is_empty() {
            out.push("the checker failed the page but reported no problem".into());
        }
        out
    }

    /// The viewport of that name (`phone` or `desktop`).
    pub fn viewport(&self, name: &str) -> Option<&Viewport> {
        self.viewports.iter().find(|v| v.name == name)
    }
}

/// The folder of the checker script and its npm packages.
pub fn checker_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Loads `url` in headless Chromium at phone and desktop widths (and the
/// phone without JavaScript) and checks it (see the module doc). Panics, with the checker's own message, when
/// the check cannot run at all (no Chromium, packages not installed:
/// `tests/run` installs both); a page that fails checks is not a panic but
/// a [`PageCheck`] with [`problems`](PageCheck::problems).
pub fn check_page(url: &str, max_bytes: u64) -> PageCheck {
    check_page_with(url, max_bytes, None)
}

/// [`check_page`], saving a full-page screenshot per viewport as
/// `screenshots/<viewport>.png` when a folder is given (test artefacts).
pub fn check_page_with(url: &str, max_bytes: u64, screenshots: Option<&Path>) -> PageCheck {
    let dir = checker_dir();
    assert!(
        dir.join("node_modules").exists(),
        "{}/node_modules is missing: run `npm ci --prefix {}` (tests/run does it)",
        dir.display(),
        dir.display()
    );
    let out = Command::new("node")
        .arg(dir.join("check-page.mjs"))
        .arg(url)
        .arg("--max-bytes")
        .arg(max_bytes.to_string())
        .args(
            screenshots
                .map(|d| vec![std::ffi::OsStr::new("--screenshots"), d.as_os_str()])
                .unwrap_or_default(),
        )
        .output()
        .unwrap_or_else(|e| panic!("cannot run node (install nodejs; tests/run does it): {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) | Some(1) => {}
        _ => panic!(
            "check-page.mjs could not check {url} ({}):\n{stderr}",
            out.status
        ),
    }
    let check: PageCheck = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check-page.mjs printed no verdict ({e}):\n{}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(
        check.ok,
        out.status.success(),
        "check-page.mjs's exit status and verdict disagree"
    );
    check
}
