//! The tokens console: `/console` and its files, served by the binary with their content types
//! and security headers, holding no secret, loading nothing from elsewhere and running no inline
//! code. (The console itself is driven in a real browser by the repository's `tests/e2e/console.rs`.)

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::backend::Backend;
use crate::support::*;

/// The files the page loads, and their content types.
const ASSETS: [(&str, &str); 3] = [
    ("console.css", "text/css; charset=utf-8"),
    ("console.js", "text/javascript; charset=utf-8"),
    ("icon.svg", "image/svg+xml"),
];

/// A file of `companion/src/console/`, as committed.
fn source(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/console").join(name)).unwrap()
}

/// An agent that shows redirects instead of following them.
fn no_redirects() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(15)))
            .build(),
    )
}

fn get(url: &str) -> Answer {
    call("GET", url, None, &[], None)
}

/// The directives of a Content-Security-Policy, name -> sources.
fn directives(policy: &str) -> BTreeMap<String, String> {
    policy
        .split(';')
        .map(str::trim)
        .filter(|directive| !directive.is_empty())
        .map(|directive| {
            let (name, sources) = directive.split_once(' ').unwrap_or((directive, ""));
            (name.to_owned(), sources.trim().to_owned())
        })
        .collect()
}

fn assert_console_headers(answer: &Answer, what: &str) {
    let policy = answer.header("content-security-policy").unwrap_or_else(|| panic!("{what}: no CSP"));
    let directives = directives(policy);
    for (name, sources) in [
        ("default-src", "'none'"),
        ("script-src", "'self'"),
        ("style-src", "'self'"),
        ("img-src", "'self'"),
        ("connect-src", "'self'"),
        ("base-uri", "'none'"),
        ("form-action", "'none'"),
        ("frame-ancestors", "'none'"),
    ] {
        assert_eq!(directives.get(name).map(String::as_str), Some(sources), "{what}: {name} in {policy}");
    }
    assert!(!policy.contains("unsafe") && !policy.contains('*'), "{what}: {policy}");
    assert_eq!(answer.header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(answer.header("x-content-type-options"), Some("nosniff"), "{what}");
    assert_eq!(answer.header("referrer-policy"), Some("no-referrer"), "{what}");
    assert_eq!(answer.header("cache-control"), Some("no-store"), "{what}");
    assert!(answer.header("set-cookie").is_none(), "{what}");
}

#[test]
fn the_page_and_its_files_are_served_with_strict_headers() {
    let server = Server::start(&Backend::sqlite("console_headers"));
    let url = &server.url;

    // No admin token needed to load it: the page asks for one.
    let page = get(&format!("{url}/console"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(page.body, source("index.html"));
    assert_console_headers(&page, "/console");
    for (name, content_type) in ASSETS {
        let asset = get(&format!("{url}/console/{name}"));
        assert_eq!(asset.status, 200, "{name}: {}", asset.body);
        assert_eq!(asset.header("content-type"), Some(content_type), "{name}");
        assert_eq!(asset.body, source(name), "{name}");
        assert_console_headers(&asset, name);
    }
    let head = call("HEAD", &format!("{url}/console"), None, &[], None);
    assert_eq!((head.status, head.body.as_str()), (200, ""));

    let slash = call_with(&no_redirects(), "GET", &format!("{url}/console/"), None, &[], None).unwrap();
    assert_eq!((slash.status, slash.header("location")), (308, Some("/console")));

    // Only the embedded files: nothing else under /console, nothing from the disk.
    for path in ["/console/index.html", "/console/nope.js", "/console/..%2Fconsole.js", "/console/console.js/x"] {
        let answer = get(&format!("{url}{path}"));
        assert_eq!(answer.status, 404, "{path}: {}", answer.body);
        assert_eq!(answer.json()["error"], "not_found", "{path}");
    }
    let posted = call("POST", &format!("{url}/console"), None, &[], Some("{}"));
    assert_eq!(posted.status, 405);
    assert!(server.stop().success());
}

#[test]
fn the_console_holds_no_secret_and_no_inline_code() {
    let server = Server::start(&Backend::sqlite("console_secrets"));
    let created = admin("POST", &server, "/v1/tokens", Some(create_body("shop", Some("cart"))));
    assert_eq!(created.status, 201, "{}", created.body);
    let token = created.json()["token"].as_str().unwrap().to_owned();

    let mut served = vec![("index.html".to_owned(), get(&format!("{}/console", server.url)).body)];
    for (name, _) in ASSETS {
        served.push((name.to_owned(), get(&format!("{}/console/{name}", server.url)).body));
    }
    for (name, text) in &served {
        assert!(!text.contains(ADMIN_TOKEN) && !text.contains(&token), "{name} holds a secret");
        assert!(!text.contains("https://"), "{name} loads something from elsewhere");
        let foreign = text.matches("http://").count();
        let svg_namespace = text.matches("http://www.w3.org/2000/svg").count();
        assert_eq!(foreign, svg_namespace, "{name} refers to another origin");
    }

    let html = source("index.html");
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains(r#"<script type="module" src="/console/console.js"></script>"#));
    for inline in ["<style", " style=", "javascript:", " onclick=", " onload=", " onsubmit=", " onerror="] {
        assert!(!html.contains(inline), "index.html has inline code: {inline}");
    }

    let script = source("console.js");
    assert!(script.contains("sessionStorage"));
    for forbidden in
        ["localStorage", "document.cookie", "innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "console.log"]
    {
        assert!(!script.contains(forbidden), "console.js uses {forbidden}");
    }
    assert!(server.stop().success());
}

#[test]
fn every_element_the_script_uses_is_on_the_page() {
    let html = source("index.html");
    let script = source("console.js");
    let ids: Vec<&str> =
        script.split("$(\"").skip(1).filter_map(|rest| rest.split_once("\")")).map(|(id, _)| id).collect();
    assert!(ids.len() > 20, "{ids:?}");
    for id in ids {
        assert!(html.contains(&format!("id=\"{id}\"")), "console.js uses #{id}, which index.html lacks");
    }
}
