//! A real browser for the pages a person looks at: Debian's `chromium`, headless, one
//! throw-away profile per run (so concurrent tests never share one).

use std::path::{Path, PathBuf};
use std::process::Command;

/// How long (virtual time) a page may run its scripts before the DOM is read or the
/// screenshot taken: the page's fetches finish within it.
const BUDGET_MS: &str = "4000";

fn chromium(args: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={BUDGET_MS}"))
        .args(args)
        .output()
        .expect("chromium runs (scripts/install-deps.sh installs it)");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The DOM of `url` once its scripts ran.
pub fn dom_of(url: &str) -> String {
    String::from_utf8(chromium(&["--dump-dom", url]).stdout).unwrap()
}

/// Saves a screenshot of `url` as `target/screenshots/<name>.png` for a reviewer; returns
/// its path.
pub fn screenshot(url: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    let target = format!("--screenshot={}", path.display());
    chromium(&[&target, "--window-size=1280,900", url]);
    assert!(
        std::fs::metadata(&path).is_ok_and(|m| m.len() > 0),
        "no screenshot at {}",
        path.display()
    );
    path
}
