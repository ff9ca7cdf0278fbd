//! Starting and restarting the service: persistence across restarts, admin token checks.

use std::process::Command;

use crate::support::*;

#[test]
fn restart_on_the_same_data_dir_keeps_tokens() {
    let dir = TempDir::new("restart");
    let data = dir.0.join("data");
    let server = Server::start(&data);
    let created = admin("POST", &server, "/v1/tokens", Some(create_body("keep", None))).json();
    let id = created["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();
    let log = server.drain_log();
    assert!(log.iter().any(|line| line.contains("POST /v1/tokens 201")), "{log:?}");
    assert!(!log.iter().any(|line| line.contains(&token) || line.contains(ADMIN_TOKEN)), "{log:?}");
    assert!(server.stop().success());
    assert!(data.join("tokengate.db").is_file());

    // Second start: admin token from a file this time, and a different issuer.
    let token_file = dir.0.join("admin-token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).unwrap();
    let file_arg = token_file.to_str().unwrap();
    let server = Server::start_with(&data, &["--admin-token-file", file_arg, "--issuer", "https://issuer.test"], None);
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

#[test]
fn serve_refuses_to_start_without_a_good_admin_token() {
    let dir = TempDir::new("refuse");
    for token in [None, Some("too-short")] {
        let mut command = Command::new(BIN);
        command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(&dir.0);
        command.env_remove("TOKENGATE_ADMIN_TOKEN");
        if let Some(token) = token {
            command.env("TOKENGATE_ADMIN_TOKEN", token);
        }
        let output = run_bounded(command, None);
        assert_eq!(output.status.code(), Some(2), "{token:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("admin token"), "{stderr}");
    }
}
