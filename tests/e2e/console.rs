//! The tokens console in a real browser: the key service serving `/console`, a function behind
//! the real Envoy with the filter (2 s key refresh), and `tests/browser/console.mjs` driving
//! Debian's Chromium through generate -> copy -> 200 through Envoy -> delete -> 403.
//!
//! Chromium and the script's playwright-core come from `make browser` (part of `make test`);
//! without them this test fails and says so. `SCREENSHOTS_DIR=DIR` makes the script save its
//! screenshots there (`make console-screenshots` refreshes `docs/console/`).

use crate::harness::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole browser run, Chromium's start included (the script stops itself at 150 s).
const BROWSER_RUN_LIMIT: Duration = Duration::from_secs(180);

fn browser_dir() -> PathBuf {
    root().join("tests/browser")
}

/// Chromium and playwright-core, or a failure saying how to get them.
fn browser_prerequisites() -> PathBuf {
    let chromium =
        std::env::var_os("CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.exists(),
        "Chromium not found at {}: run `make browser` (it installs Debian's chromium), or set CHROMIUM",
        chromium.display()
    );
    let playwright = browser_dir().join("node_modules/playwright-core/package.json");
    assert!(playwright.exists(), "{} is missing: run `make browser` (npm ci in tests/browser)", playwright.display());
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|output| output.status.success()),
        "node is not installed: the console test needs Node.js 20 or later (Debian: apt-get install nodejs)"
    );
    chromium
}

#[test]
fn console_generate_copy_call_delete_in_chromium() {
    let chromium = browser_prerequisites();
    let service = KeyService::start();
    let function = TestServer::start(true);
    let plugin = remote_config(
        "/v1/namespaces/shop/jwks.json",
        json!({"namespace_id": "shop", "function_id": "cart", "issuer": "tokengate", "jwks": {"refresh_seconds": 2}}),
    );
    let envoy = Envoy::single(plugin, service.port, function.port, 1);

    let mut command = Command::new("node");
    command
        .arg(browser_dir().join("console.mjs"))
        .env("CONSOLE_URL", format!("http://127.0.0.1:{}/console", service.port))
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("FUNCTION_URL", format!("http://127.0.0.1:{}/cart", envoy.port("l")))
        .env("NAMESPACE", "shop")
        .env("FUNCTION", "cart")
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let started = Instant::now();
    let mut child = command.spawn().expect("start node tests/browser/console.mjs");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > BROWSER_RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tests/browser/console.mjs did not finish within {BROWSER_RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "tests/browser/console.mjs failed ({status}): its output above says at which step");
    eprintln!("browser run: {:.1} s", started.elapsed().as_secs_f64());

    // What the console did, as the API and Envoy saw it.
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let listed = get(service.port, "/v1/tokens?namespace_id=shop", &[("authorization", auth.as_bytes())]);
    assert_eq!(listed.status, 200, "{}", listed.body);
    let listed: Value = serde_json::from_str(&listed.body).unwrap();
    let status_of = |description: &str| {
        let tokens = listed["tokens"].as_array().unwrap();
        let token = tokens.iter().find(|t| t["description"] == description);
        token.unwrap_or_else(|| panic!("no token {description:?} in {listed}"))["status"].as_str().unwrap().to_owned()
    };
    assert_eq!(status_of("Console e2e"), "deleted");
    assert_eq!(status_of("Partner integration"), "active");
    assert!(function.seen().iter().any(|seen| seen.path == "/cart"), "no call reached the function");
    envoy.assert_healthy();
}
