//! The admin API and the JWKS over HTTP: auth, create, publish, revalidate, list, delete.

use serde_json::{json, Value};

use crate::backend::{on_each_backend, Backend};
use crate::support::*;

on_each_backend!(admin_api_lifecycle);

fn admin_api_lifecycle(backend: Backend) {
    let server = Server::start(&backend);
    let url = &server.url;

    // No token, a wrong token, a wrong scheme: 401 with a JSON error, before any validation.
    let body = create_body("shop", Some("cart")).to_string();
    for auth in [None, Some("wrong-token-0123456789")] {
        let answer = call("POST", &format!("{url}/v1/tokens"), auth, &[], Some(&body));
        assert_eq!(answer.status, 401, "{}", answer.body);
        assert_eq!(answer.json()["error"], "unauthorized");
    }
    let basic = [("Authorization", "Basic dGVzdA==")];
    assert_eq!(call("GET", &format!("{url}/v1/tokens?namespace_id=shop"), None, &basic, None).status, 401);

    // Unknown namespace: an empty set, never 404.
    let empty = jwks(&server, "shop");
    assert_eq!(empty.status, 200);
    assert_eq!(empty.body, r#"{"keys":[]}"#);

    let created = admin("POST", &server, "/v1/tokens", Some(create_body("shop", Some("cart"))));
    assert_eq!(created.status, 201, "{}", created.body);
    let created = created.json();
    let id = created["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();
    assert_eq!(created["namespace_id"], "shop");
    assert_eq!(created["function_id"], "cart");
    assert_eq!(created["status"], "active");
    assert_eq!(created["expires_at"], "2099-01-01T00:00:00Z");
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    let namespace_token = admin(
        "POST",
        &server,
        "/v1/tokens",
        Some(json!({
            "namespace_id": "shop", "description": "whole namespace", "expires_at": null,
        })),
    );
    assert_eq!(namespace_token.status, 201, "{}", namespace_token.body);
    let namespace_token = namespace_token.json();
    assert_eq!(namespace_token["function_id"], Value::Null);
    assert_eq!(namespace_token["expires_at"], Value::Null);
    let namespace_id = namespace_token["id"].as_str().unwrap().to_owned();

    // The JWKS publishes both keys; the token verifies against it and says what it should.
    let published = jwks(&server, "shop");
    assert_eq!(published.status, 200);
    assert_eq!(published.header("content-type"), Some("application/json"));
    assert_eq!(published.header("cache-control"), Some("no-cache"));
    let mut published_kids = kids(&published);
    published_kids.sort();
    let mut expected = vec![id.clone(), namespace_id.clone()];
    expected.sort();
    assert_eq!(published_kids, expected);
    let claims = verify_with_jwks(&token, &published.json());
    assert_eq!(claims["jti"], id.as_str());
    assert_eq!(claims["iss"], "tokengate");
    assert_eq!(claims["exp"], 4_070_908_800_i64);
    assert_eq!(claims["application_claim"], json!([{"namespace_id": "shop", "application_id": "cart"}]));
    let namespace_claims = verify_with_jwks(namespace_token["token"].as_str().unwrap(), &published.json());
    assert!(namespace_claims.get("exp").is_none());
    assert_eq!(namespace_claims["application_claim"][0]["application_id"], "");
    assert!(kids(&jwks(&server, "other")).is_empty());

    // ETag revalidation.
    let etag = published.header("etag").unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let jwks_url = format!("{url}/v1/namespaces/shop/jwks.json");
    let revalidated = call("GET", &jwks_url, None, &[("If-None-Match", &etag)], None);
    assert_eq!(revalidated.status, 304);
    assert!(revalidated.body.is_empty());
    assert_eq!(revalidated.header("etag"), Some(etag.as_str()));
    assert_eq!(call("GET", &jwks_url, None, &[("If-None-Match", "\"stale\"")], None).status, 200);

    // List and show: metadata only, never a token.
    let listed = admin("GET", &server, "/v1/tokens?namespace_id=shop", None);
    assert_eq!(listed.status, 200);
    assert!(!listed.body.contains(&token) && !listed.body.contains("\"token\""), "{}", listed.body);
    assert_eq!(listed.json()["tokens"].as_array().unwrap().len(), 2);
    let only_cart = admin("GET", &server, "/v1/tokens?namespace_id=shop&function_id=cart", None);
    let only_cart = only_cart.json();
    assert_eq!(only_cart["tokens"].as_array().unwrap().len(), 1);
    assert_eq!(only_cart["tokens"][0]["id"], id.as_str());
    let shown = admin("GET", &server, &format!("/v1/tokens/{id}"), None);
    assert_eq!(shown.status, 200);
    assert!(!shown.body.contains(&token));
    assert_eq!(shown.json()["description"], "integration test");
    assert_eq!(shown.json()["deleted_at"], Value::Null);

    // Delete: the key leaves the JWKS at once, and the ETag changes.
    let deleted = admin("DELETE", &server, &format!("/v1/tokens/{id}"), None);
    assert_eq!(deleted.status, 204);
    assert!(deleted.body.is_empty());
    let after = jwks(&server, "shop");
    assert_eq!(kids(&after), vec![namespace_id.clone()]);
    assert_ne!(after.header("etag"), Some(etag.as_str()));
    assert_eq!(admin("DELETE", &server, &format!("/v1/tokens/{id}"), None).status, 404);
    let shown = admin("GET", &server, &format!("/v1/tokens/{id}"), None).json();
    assert_eq!(shown["status"], "deleted");
    assert!(shown["deleted_at"].as_str().is_some());

    // Revoking the last key publishes an empty set.
    assert_eq!(admin("DELETE", &server, &format!("/v1/tokens/{namespace_id}"), None).status, 204);
    assert_eq!(jwks(&server, "shop").body, r#"{"keys":[]}"#);

    let unknown = "00000000-0000-4000-8000-000000000000";
    assert_eq!(admin("GET", &server, &format!("/v1/tokens/{unknown}"), None).status, 404);
    assert_eq!(admin("DELETE", &server, &format!("/v1/tokens/{unknown}"), None).status, 404);

    // SIGTERM: a clean, graceful exit.
    let status = server.stop();
    assert!(status.success(), "{status}");
}
