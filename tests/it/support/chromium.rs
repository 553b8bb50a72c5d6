//! Headless Chromium (Debian's `chromium`), run as a process: the DOM a page ends up with
//! once its scripts have run, and screenshots under `target/screenshots/` for a reviewer.

use std::path::PathBuf;
use std::process::Output;

use tokio::process::Command;

/// Virtual time a page gets to run its scripts before the DOM is taken, in milliseconds
/// (virtual: Chromium fast-forwards idle timers, so this is an upper bound, not a wait).
const SCRIPT_BUDGET_MS: u32 = 30_000;

/// The browser binary; installed by `scripts/install-deps.sh`.
fn binary() -> &'static str {
    "chromium"
}

async fn run(args: &[String]) -> Output {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new(binary())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={SCRIPT_BUDGET_MS}"))
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run chromium ({e}); run scripts/install-deps.sh"));
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The DOM of `url` after its scripts ran.
pub async fn dump_dom(url: &str) -> String {
    let output = run(&["--dump-dom".to_owned(), url.to_owned()]).await;
    String::from_utf8(output.stdout).expect("the DOM is UTF-8")
}

/// Saves a 1280x900 screenshot of `url` as `target/screenshots/<name>.png`; returns its path.
pub async fn screenshot(url: &str, name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&path);
    run(&[
        format!("--screenshot={}", path.display()),
        "--window-size=1280,900".to_owned(),
        url.to_owned(),
    ])
    .await;
    assert!(
        path.exists(),
        "chromium saved no screenshot at {}",
        path.display()
    );
    path
}
