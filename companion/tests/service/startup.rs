//! Starting and restarting the service: persistence across restarts and across a SIGKILL, the
//! choice of store, admin token checks.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::backend::{on_each_backend, Backend};
use crate::support::*;

on_each_backend!(restart_keeps_tokens, sigkill_right_after_creates_loses_none);

fn restart_keeps_tokens(backend: Backend) {
    let server = Server::start(&backend);
    let created = admin("POST", &server, "/v1/tokens", Some(create_body("keep", None))).json();
    let id = created["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();
    let log = server.drain_log();
    assert!(log.iter().any(|line| line.contains("POST /v1/tokens 201")), "{log:?}");
    assert!(!log.iter().any(|line| line.contains(&token) || line.contains(ADMIN_TOKEN)), "{log:?}");
    assert!(!log.iter().any(|line| line.contains(":tokengate@")), "a password reached the log: {log:?}");
    assert!(server.stop().success());
    if let Some(data) = backend.data_dir() {
        assert!(data.join("tokengate.db").is_file());
    }

    // Second start: admin token from a file this time, and a different issuer.
    let dir = TempDir::new("restart-token");
    let token_file = dir.0.join("admin-token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).unwrap();
    let file_arg = token_file.to_str().unwrap();
    let server =
        Server::start_with(&backend, &["--admin-token-file", file_arg, "--issuer", "https://issuer.test"], None);
    let shown = admin("GET", &server, &format!("/v1/tokens/{id}"), None);
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(shown.json()["namespace_id"], "keep");
    let published = jwks(&server, "keep");
    assert_eq!(kids(&published), vec![id]);
    verify_with_jwks(&token, &published.json());
    let second = admin("POST", &server, "/v1/tokens", Some(create_body("keep", None))).json();
    let claims = verify_with_jwks(second["token"].as_str().unwrap(), &jwks(&server, "keep").json());
    assert_eq!(claims["iss"], "https://issuer.test");
    assert!(server.stop().success());
}

/// Clients creating tokens in parallel; the server is SIGKILLed the moment the
/// [`KILL_AFTER`]th 201 arrives, with other creates still in flight. After a restart every token
/// whose create answered 201 is there, with its key in the JWKS.
fn sigkill_right_after_creates_loses_none(backend: Backend) {
    const CLIENTS: usize = 4;
    const KILL_AFTER: usize = 24;
    const MAX_PER_CLIENT: usize = 100;

    let server = Server::start(&backend);
    let stop = Arc::new(AtomicBool::new(false));
    let (created_tx, created) = mpsc::channel::<(String, String)>();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (url, stop, created_tx) = (format!("{}/v1/tokens", server.url), Arc::clone(&stop), created_tx.clone());
            std::thread::spawn(move || {
                let body = create_body("crash", None).to_string();
                for _ in 0..MAX_PER_CLIENT {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    // After the kill there is no answer at all: that create did not happen (or did,
                    // unseen), and nothing is asserted about it.
                    let Ok(answer) = try_call("POST", &url, Some(ADMIN_TOKEN), &[], Some(&body)) else { break };
                    if answer.status == 201 {
                        let json = answer.json();
                        let id = json["id"].as_str().unwrap().to_owned();
                        let token = json["token"].as_str().unwrap().to_owned();
                        if created_tx.send((id, token)).is_err() {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    drop(created_tx);

    let mut confirmed = Vec::new();
    while confirmed.len() < KILL_AFTER {
        let next = created.recv_timeout(Duration::from_secs(30));
        confirmed.push(next.unwrap_or_else(|_| panic!("only {} creates answered 201", confirmed.len())));
    }
    let status = server.kill();
    stop.store(true, Ordering::SeqCst);
    assert!(!status.success(), "{status}");
    for client in clients {
        client.join().unwrap();
    }
    // 201s that arrived between the KILL_AFTERth and the kill count as well.
    confirmed.extend(created.try_iter());

    let server = Server::start(&backend);
    let published = jwks(&server, "crash").json();
    let published_kids = kids(&jwks(&server, "crash"));
    for (id, token) in &confirmed {
        let shown = admin("GET", &server, &format!("/v1/tokens/{id}"), None);
        assert_eq!(shown.status, 200, "token {id} answered 201 but is gone after SIGKILL: {}", shown.body);
        assert_eq!(shown.json()["status"], "active");
        assert!(published_kids.contains(id), "key {id} missing from the JWKS after SIGKILL");
        verify_with_jwks(token, &published);
    }
    let listed = admin("GET", &server, "/v1/tokens?namespace_id=crash", None).json();
    let stored = listed["tokens"].as_array().unwrap().len();
    assert!(stored >= confirmed.len(), "{stored} stored, {} confirmed", confirmed.len());
    assert!(server.stop().success());
}

#[test]
fn serve_refuses_to_start_without_a_good_admin_token() {
    let dir = TempDir::new("refuse");
    for token in [None, Some("too-short")] {
        let mut command = Command::new(BIN);
        command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(&dir.0);
        command.env_remove("TOKENGATE_ADMIN_TOKEN").env_remove("TOKENGATE_DATABASE_URL");
        if let Some(token) = token {
            command.env("TOKENGATE_ADMIN_TOKEN", token);
        }
        let output = run_bounded(command, None);
        assert_eq!(output.status.code(), Some(2), "{token:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("admin token"), "{stderr}");
    }
}

#[test]
fn serve_needs_exactly_one_usable_store() {
    let dir = TempDir::new("stores");
    let data_dir = dir.0.to_str().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unreachable = format!("postgres://tokengate:hunter2@{}/tokengate", closed.local_addr().unwrap());
    drop(closed);
    let cases: &[(&[&str], Option<&str>, i32, &str)] = &[
        (&[], None, 2, "no token store: pass --data-dir DIR (SQLite) or --database-url"),
        (&["--data-dir", data_dir, "--database-url", "postgres://u:p@127.0.0.1/db"], None, 2, "two token stores"),
        (&["--data-dir", data_dir], Some("postgres://u:p@127.0.0.1/db"), 2, "TOKENGATE_DATABASE_URL"),
        (&["--database-url", "sqlite:///tmp/x.db"], None, 2, "invalid --database-url"),
        (&["--database-url", "postgres://u:p@127.0.0.1/db?sslmode=require"], None, 2, "without TLS"),
        (&["--database-url", &unreachable], None, 1, "cannot open the token store: postgres: error connecting"),
        (&[], Some(&unreachable), 1, "cannot open the token store"),
    ];
    for (args, env_url, code, message) in cases {
        let mut command = Command::new(BIN);
        command.args(["serve", "--listen", "127.0.0.1:0"]).args(*args).env("TOKENGATE_ADMIN_TOKEN", ADMIN_TOKEN);
        command.env_remove("TOKENGATE_DATABASE_URL");
        if let Some(url) = env_url {
            command.env("TOKENGATE_DATABASE_URL", url);
        }
        let output = run_bounded(command, None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(*code), "{args:?} {env_url:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?} {env_url:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}
