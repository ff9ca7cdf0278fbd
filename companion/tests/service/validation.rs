//! Bad requests are answered 400/404/413 with the field named, and nothing is stored.

use serde_json::{json, Value};

use crate::backend::{on_each_backend, Backend};
use crate::support::*;

on_each_backend!(validation_names_the_field);

fn validation_names_the_field(backend: Backend) {
    let server = Server::start(&backend);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"namespace_id": "shop", "description": "d", "expires_at": "2000-01-01T00:00:00Z"}), "expires_at"),
        (json!({"namespace_id": "shop", "description": "d", "expires_at": "next week"}), "expires_at"),
        (json!({"namespace_id": "shop", "description": "d", "expires_at": "9999-12-31T00:00:00Z"}), "expires_at"),
        (json!({"namespace_id": "shop/x", "description": "d"}), "namespace_id"),
        (json!({"description": "d"}), "namespace_id"),
        (json!({"namespace_id": "shop", "function_id": "-f", "description": "d"}), "function_id"),
        (json!({"namespace_id": "shop", "description": ""}), "description"),
        (json!({"namespace_id": "shop", "description": "x".repeat(257)}), "description"),
        (json!({"namespace_id": "shop", "description": "bell\u{7}"}), "description"),
        (json!({"namespace_id": "shop", "description": "d", "admin": true}), "admin"),
    ];
    for (body, field) in cases {
        let answer = admin("POST", &server, "/v1/tokens", Some(body.clone()));
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        let error = answer.json();
        assert_eq!(error["error"], "invalid_request", "{body}");
        assert_eq!(error["field"], field, "{body}: {error}");
        assert!(!error["message"].as_str().unwrap().is_empty());
    }

    let url = format!("{}/v1/tokens", server.url);
    let malformed = call("POST", &url, Some(ADMIN_TOKEN), &[], Some("{\"namespace_id\":"));
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json()["error"], "invalid_request");
    let plain = [("Content-Type", "text/plain")];
    let mut request = ureq::http::Request::builder().method("POST").uri(&url);
    request = request.header("Authorization", format!("Bearer {ADMIN_TOKEN}")).header(plain[0].0, plain[0].1);
    let response = agent().run(request.body(create_body("shop", None).to_string()).unwrap()).unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let huge = json!({"namespace_id": "shop", "description": "x".repeat(20_000)}).to_string();
    let too_large = call("POST", &url, Some(ADMIN_TOKEN), &[], Some(&huge));
    assert_eq!(too_large.status, 413);
    assert_eq!(too_large.json()["error"], "payload_too_large");

    let missing = admin("GET", &server, "/v1/tokens", None);
    assert_eq!((missing.status, missing.json()["field"].clone()), (400, json!("namespace_id")));
    let bad_function = admin("GET", &server, "/v1/tokens?namespace_id=shop&function_id=..", None);
    assert_eq!(bad_function.json()["field"], "function_id");
    assert_eq!(admin("GET", &server, "/v1/tokens/not-a-token-id", None).status, 404);
    assert_eq!(admin("DELETE", &server, "/v1/tokens/..%2F..%2Fx", None).status, 404);
    let junk_namespace = jwks(&server, "-junk");
    assert_eq!(junk_namespace.status, 400);
    assert_eq!(junk_namespace.json()["field"], "namespace_id");
    assert_eq!(call("GET", &format!("{}/v2/anything", server.url), None, &[], None).status, 404);

    // Nothing invalid was stored.
    let listed = admin("GET", &server, "/v1/tokens?namespace_id=shop", None).json();
    assert_eq!(listed, json!({"tokens": []}));
    assert!(server.stop().success());
}
