//! The tokens console: a page, its stylesheet, script and icon (`companion/src/console/`),
//! embedded in the binary and served at `/console` and `/console/{asset}`.
//!
//! The page holds no secret and needs no login to load: it asks for the admin token, keeps it in
//! the tab's `sessionStorage` only and calls the admin API from the same origin. Every answer
//! here carries a strict Content-Security-Policy (no inline script or style, nothing from another
//! origin, no framing) and is never cached.

use axum::extract::Path;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use super::error::ApiError;

/// The console page.
pub const CONSOLE_ROUTE: &str = "/console";
/// The console's stylesheet, script and icon.
pub const CONSOLE_ASSET_ROUTE: &str = "/console/{asset}";

/// `Content-Security-Policy` of every console answer: scripts, styles, images and API calls from
/// this origin only, no inline code, no plugins, no form posts, never inside a frame.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// The page, served at [`CONSOLE_ROUTE`].
const PAGE: Asset =
    Asset { name: "index.html", content_type: "text/html; charset=utf-8", body: include_str!("../console/index.html") };

/// What the page loads, served at `/console/<name>`.
const ASSETS: [Asset; 3] = [
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../console/console.css"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../console/console.js"),
    },
    Asset { name: "icon.svg", content_type: "image/svg+xml", body: include_str!("../console/icon.svg") },
];

/// The console's routes (outside the request budgets: they serve constants).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(CONSOLE_ROUTE, get(|| async { serve(&PAGE) }))
        .route("/console/", get(|| async { Redirect::permanent(CONSOLE_ROUTE) }))
        .route(CONSOLE_ASSET_ROUTE, get(asset))
}

/// `GET /console/{asset}`: one of [`ASSETS`], or 404.
async fn asset(name: Path<String>) -> Response {
    match ASSETS.iter().find(|asset| asset.name == name.as_str()) {
        Some(asset) => serve(asset),
        None => ApiError::NotFound("no such console file").into_response(),
    }
}

/// An asset with the console's security and caching headers.
fn serve(asset: &Asset) -> Response {
    let mut response = (StatusCode::OK, asset.body).into_response();
    let headers = response.headers_mut();
    let fixed: [(HeaderName, &'static str); 8] = [
        (header::CONTENT_TYPE, asset.content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
        (HeaderName::from_static("cross-origin-resource-policy"), "same-origin"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_embedded_assets() {
        for asset in &ASSETS {
            assert!(PAGE.body.contains(&format!("\"/console/{}\"", asset.name)), "{} unused", asset.name);
        }
        assert!(PAGE.body.contains(r#"<script type="module" src="/console/console.js"></script>"#));
    }
}
