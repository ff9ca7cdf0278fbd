//! Two `tokengate serve` replicas on one PostgreSQL database: what one does, the other shows at
//! once (its admin API) or within the JWKS cache's lifetime (its JWKS), and both ride out
//! PostgreSQL dropping every connection.

use std::time::{Duration, Instant};

use tokengate_cli::jwks_cache::JWKS_CACHE_TTL;

use crate::backend::{Backend, TestDatabase};
use crate::support::*;

/// Polls `server`'s JWKS of `namespace` until `wanted` holds of it, and checks that it took no
/// longer than the cache's lifetime (plus slack for a slow test machine).
fn jwks_within_cache_ttl(server: &Server, namespace: &str, wanted: impl Fn(&Answer) -> bool) -> Answer {
    let bound = JWKS_CACHE_TTL + Duration::from_millis(1500);
    let started = Instant::now();
    loop {
        let answer = jwks(server, namespace);
        if wanted(&answer) {
            return answer;
        }
        assert!(started.elapsed() < bound, "JWKS still stale after {bound:?}: {}", answer.body);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_replicas_share_one_database() {
    let Some(backend) = Backend::postgres(concat!(module_path!(), "::two_replicas_share_one_database")) else { return };
    // Both start at once on the empty database: their migrations take turns under the lock.
    let a = Server::spawn(&backend, &[], Some(ADMIN_TOKEN));
    let b = Server::spawn(&backend, &[], Some(ADMIN_TOKEN));
    let (a, b) = (a.wait_until_listening(), b.wait_until_listening());
    assert_ne!(a.url, b.url);

    // Created on A: at once in B's JWKS, list and show.
    let created = admin("POST", &a, "/v1/tokens", Some(create_body("shared", Some("cart"))));
    assert_eq!(created.status, 201, "{}", created.body);
    let created = created.json();
    let id = created["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();
    let on_b = jwks(&b, "shared");
    assert_eq!(kids(&on_b), vec![id.clone()]);
    verify_with_jwks(&token, &on_b.json());
    let listed = admin("GET", &b, "/v1/tokens?namespace_id=shared", None).json();
    assert_eq!(listed["tokens"][0]["id"], id.as_str());
    assert_eq!(admin("GET", &b, &format!("/v1/tokens/{id}"), None).json()["status"], "active");

    // Created on B: at once on A.
    let other = admin("POST", &b, "/v1/tokens", Some(create_body("shared", None))).json();
    let other_id = other["id"].as_str().unwrap().to_owned();
    let both = jwks(&a, "shared");
    let mut both_kids = kids(&both);
    both_kids.sort();
    let mut expected = vec![id.clone(), other_id.clone()];
    expected.sort();
    assert_eq!(both_kids, expected);
    assert_eq!(both.body, jwks(&b, "shared").body, "both replicas publish the same document");
    let etag = both.header("etag").unwrap().to_owned();

    // Deleted on B: A's admin API knows at once; A's JWKS (cached just above) within a second.
    assert_eq!(admin("DELETE", &b, &format!("/v1/tokens/{id}"), None).status, 204);
    let after = jwks_within_cache_ttl(&a, "shared", |answer| kids(answer) == vec![other_id.clone()]);
    assert_ne!(after.header("etag"), Some(etag.as_str()));
    assert_eq!(admin("GET", &a, &format!("/v1/tokens/{id}"), None).json()["status"], "deleted");
    assert_eq!(admin("DELETE", &a, &format!("/v1/tokens/{id}"), None).status, 404);

    // PostgreSQL drops every connection (as in a restart): both replicas reconnect unnoticed.
    let Backend::Postgres(database) = &backend else { panic!("a PostgreSQL test on {}", a.url) };
    terminate_connections(database);
    let listed = admin("GET", &a, "/v1/tokens?namespace_id=shared", None);
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.json()["tokens"].as_array().unwrap().len(), 2);
    terminate_connections(database);
    assert_eq!(admin("DELETE", &b, &format!("/v1/tokens/{other_id}"), None).status, 204);
    assert_eq!(jwks(&b, "shared").body, r#"{"keys":[]}"#);
    jwks_within_cache_ttl(&a, "shared", |answer| answer.body == r#"{"keys":[]}"#);
    assert!(a.drain_log().iter().any(|line| line.contains("PostgreSQL connection lost")));
    assert!(b.drain_log().iter().any(|line| line.contains("PostgreSQL connection lost")));

    assert!(a.stop().success());
    assert!(b.stop().success());
}

/// Ends every session on the test database but the caller's, as a PostgreSQL restart would.
pub fn terminate_connections(database: &TestDatabase) {
    let mut client = database.client();
    let ended = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&database.name],
        )
        .unwrap();
    assert!(!ended.is_empty(), "no session to end");
}
