//! A real browser for the pages a person looks at: Debian's `chromium`, headless, one
//! throw-away profile per run (so concurrent tests never share one).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long (virtual time) a page may run its scripts before the DOM is read or the
/// screenshot taken: the page's fetches finish within it.
const BUDGET_MS: &str = "4000";

/// How long one chromium run may take before it is killed and run again. Now and then a
/// headless chromium never exits, the page long served (seen with two test suites at once
/// on two cores): that is the browser's hang, not the page's, and a fresh run renders it.
const RUN_LIMIT: Duration = Duration::from_secs(90);
/// Runs before giving up.
const RUNS: usize = 3;

fn chromium(args: &[&str]) -> Output {
    for run in 1..=RUNS {
        if let Some(output) = run_chromium(args) {
            assert!(
                output.status.success(),
                "chromium failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            return output;
        }
        eprintln!("chromium did not exit within {RUN_LIMIT:?} (run {run} of {RUNS}); killed");
    }
    panic!("chromium did not exit within {RUN_LIMIT:?}, {RUNS} runs in a row");
}

/// One chromium run with a fresh profile; `None` if it had to be killed.
fn run_chromium(args: &[&str]) -> Option<Output> {
    let profile = tempfile::tempdir().unwrap();
    let child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={BUDGET_MS}"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium runs (scripts/install-deps.sh installs it)");
    let pid = child.id().to_string();
    // Waited for on a thread of its own, which also drains its output (a DOM dump fills
    // a pipe), so that this one can give up on it.
    let (sender, exited) = mpsc::channel();
    std::thread::spawn(move || sender.send(child.wait_with_output()));
    match exited.recv_timeout(RUN_LIMIT) {
        Ok(output) => Some(output.expect("chromium's output is read")),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            None
        }
    }
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
