//! The `tokengate token ...` commands against a running service, with their exit codes.

use std::process::Command;

use crate::backend::{on_each_backend, Backend};
use crate::support::*;

on_each_backend!(cli_drives_the_admin_api);

fn cli_drives_the_admin_api(backend: Backend) {
    let server = Server::start(&backend);
    let url = server.url.as_str();

    let created = stdout_json(&cli(
        url,
        &[
            "token",
            "create",
            "--namespace",
            "shop",
            "--function",
            "cart",
            "--description",
            "from the cli",
            "--expires-in",
            "12h",
            "--output",
            "json",
        ],
    ));
    let id = created["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();
    assert_eq!(created["status"], "active");
    assert_eq!(created["function_id"], "cart");
    let claims = verify_with_jwks(&token, &jwks(&server, "shop").json());
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((43_190..=43_210).contains(&lifetime), "{claims}");

    // Table output shows the token once, with the warning.
    let table = cli(url, &["token", "create", "--namespace", "shop", "--description", "table", "--no-expiration"]);
    assert!(table.status.success(), "{table:?}");
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("will not be shown again"), "{table}");
    assert!(table.contains("expires_at   never"), "{table}");

    let listed = stdout_json(&cli(url, &["token", "list", "--namespace", "shop", "--output", "json"]));
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&token));
    let listed_table = cli(url, &["token", "list", "--namespace", "shop", "--function", "cart"]);
    let listed_table = String::from_utf8(listed_table.stdout).unwrap();
    assert!(listed_table.starts_with("ID ") && listed_table.contains(&id), "{listed_table}");
    assert_eq!(listed_table.lines().count(), 2, "{listed_table}");

    let shown = stdout_json(&cli(url, &["token", "show", &id, "--output", "json"]));
    assert_eq!(shown["description"], "from the cli");

    // Delete without --yes on a non-terminal stdin aborts.
    let mut command = Command::new(BIN);
    command.args(["token", "delete", &id]).env("TOKENGATE_URL", url).env("TOKENGATE_ADMIN_TOKEN", ADMIN_TOKEN);
    let aborted = run_bounded(command, Some("y\n"));
    assert_eq!(aborted.status.code(), Some(1), "{aborted:?}");
    assert!(kids(&jwks(&server, "shop")).contains(&id));

    let deleted = cli(url, &["token", "delete", &id, "--yes"]);
    assert!(deleted.status.success(), "{deleted:?}");
    assert!(!kids(&jwks(&server, "shop")).contains(&id));

    // Exit codes: API error 1 (with the server's message), usage 2, unreachable 3.
    let again = cli(url, &["token", "delete", &id, "--yes"]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    let past = cli(
        url,
        &["token", "create", "--namespace", "shop", "--description", "d", "--expires-at", "2001-01-01T00:00:00Z"],
    );
    assert_eq!(past.status.code(), Some(1), "{past:?}");
    assert!(String::from_utf8_lossy(&past.stderr).contains("expires_at: must be in the future"), "{past:?}");
    let no_expiry = cli(url, &["token", "create", "--namespace", "shop", "--description", "d"]);
    assert_eq!(no_expiry.status.code(), Some(2), "{no_expiry:?}");
    let two_expiries = cli(
        url,
        &["token", "create", "--namespace", "shop", "--description", "d", "--no-expiration", "--expires-in", "1h"],
    );
    assert_eq!(two_expiries.status.code(), Some(2), "{two_expiries:?}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = cli(&closed_url, &["token", "list", "--namespace", "shop"]);
    assert_eq!(unreachable.status.code(), Some(3), "{unreachable:?}");

    let mut command = Command::new(BIN);
    command.args(["token", "list", "--namespace", "shop"]).env("TOKENGATE_URL", url);
    command.env_remove("TOKENGATE_ADMIN_TOKEN");
    let no_token = run_bounded(command, None);
    assert_eq!(no_token.status.code(), Some(1), "{no_token:?}");

    let mut command = Command::new(BIN);
    command.args(["token", "list", "--namespace", "shop"]).env("TOKENGATE_URL", url);
    command.env("TOKENGATE_ADMIN_TOKEN", "wrong-token-0123456789");
    let wrong_token = run_bounded(command, None);
    assert_eq!(wrong_token.status.code(), Some(1), "{wrong_token:?}");

    assert!(server.stop().success());
}

#[test]
fn help_describes_every_command() {
    let top = run_bounded(
        {
            let mut command = Command::new(BIN);
            command.arg("--help");
            command
        },
        None,
    );
    assert!(top.status.success());
    let top = String::from_utf8(top.stdout).unwrap();
    for word in ["serve", "token", "--url", "--output", "Exit codes"] {
        assert!(top.contains(word), "{word}: {top}");
    }
    for (args, word) in [
        (&["token", "--help"][..], "Mint a token"),
        (&["token", "create", "--help"][..], "--expires-in"),
        (&["token", "delete", "--help"][..], "--yes"),
        (&["serve", "--help"][..], "--admin-token-file"),
        (&["serve", "--help"][..], "--database-url"),
        (&["serve", "--help"][..], "without TLS"),
    ] {
        let mut command = Command::new(BIN);
        command.args(args);
        let output = run_bounded(command, None);
        assert!(output.status.success(), "{args:?}");
        assert!(String::from_utf8(output.stdout).unwrap().contains(word), "{args:?}");
    }
}
