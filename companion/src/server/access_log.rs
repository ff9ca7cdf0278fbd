//! One stderr line per request: method, path, status, duration. Never headers or bodies, so
//! neither tokens nor the admin token can reach the log.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

/// Longest path logged; longer ones are cut (the path is client-controlled).
const MAX_LOGGED_PATH: usize = 200;

/// Middleware that logs each request after it is answered.
pub async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path: String = request.uri().path().chars().take(MAX_LOGGED_PATH).collect();
    let started = Instant::now();
    let response = next.run(request).await;
    eprintln!("tokengate: {method} {path} {} {}ms", response.status().as_u16(), started.elapsed().as_millis());
    response
}
