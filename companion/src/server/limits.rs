//! How much work the server takes on at once, and for how long: so that a flood of public JWKS
//! requests can neither starve the admin API nor make the process grow without bound.
//!
//! - Requests in flight: at most [`PUBLIC_REQUESTS`] on the JWKS route and, separately, at most
//!   [`ADMIN_REQUESTS`] authenticated admin calls. Requests over a budget wait for a turn
//!   (within [`REQUEST_TIMEOUT`]); a JWKS flood never takes the admin API's turns.
//! - Time: every request is answered within [`REQUEST_TIMEOUT`], with a 503 if need be.
//! - Threads: store calls run on at most [`BLOCKING_THREADS`] blocking threads, of which the
//!   service uses only its own budgets (see [`crate::service`]); JWKS answers come from the
//!   service's short cache.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;

use super::error::ApiError;

/// Most JWKS requests being handled at once.
pub const PUBLIC_REQUESTS: usize = 256;

/// Most authenticated admin requests being handled at once.
pub const ADMIN_REQUESTS: usize = 32;

/// Longest time a request may take, waiting for its turn included; then it is answered 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Most threads in the runtime's blocking pool (tokio's default is 512).
pub const BLOCKING_THREADS: usize = 16;

/// One budget of concurrent requests, shared by every route it is put on.
pub fn request_budget(size: usize) -> GlobalConcurrencyLimitLayer {
    // One semaphore for all routes and connections (a plain ConcurrencyLimitLayer would make
    // one per route it wraps).
    GlobalConcurrencyLimitLayer::with_semaphore(Arc::new(Semaphore::new(size)))
}

/// Middleware answering 503 when the rest of the stack takes over [`REQUEST_TIMEOUT`].
pub async fn time_limit(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable(format!(
            "no answer within {} s: the service is busy, retry later",
            REQUEST_TIMEOUT.as_secs()
        ))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;
    use tower::Service;

    use super::*;

    async fn answer(app: &mut Router, path: &str) -> (StatusCode, String) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = app.call(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn slow_requests_are_answered_503() {
        let slow = || async {
            tokio::time::sleep(REQUEST_TIMEOUT * 2).await;
            "late"
        };
        let mut app = Router::new()
            .route("/slow", get(slow))
            .route("/fast", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(time_limit));
        assert_eq!(answer(&mut app, "/fast").await, (StatusCode::OK, "ok".to_owned()));
        let (status, body) = answer(&mut app, "/slow").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains(r#""error":"unavailable""#) && body.contains("10 s"), "{body}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_is_shared_by_the_routes_it_wraps() {
        let (release, released) = tokio::sync::watch::channel(false);
        let hold = move || {
            let mut released = released.clone();
            async move {
                let _ = released.wait_for(|released| *released).await;
                "held"
            }
        };
        let mut app = Router::new()
            .route("/hold", get(hold))
            .route("/other", get(|| async { "other" }))
            .route_layer(request_budget(1))
            .route("/outside", get(|| async { "outside" }));
        let mut holder = app.clone();
        let held = tokio::spawn(async move { answer(&mut holder, "/hold").await });
        tokio::task::yield_now().await;
        // The one turn is taken: the other route waits, a route outside the budget does not.
        let waited = tokio::time::timeout(Duration::from_secs(1), answer(&mut app, "/other")).await;
        assert!(waited.is_err(), "/other did not wait for the budget");
        assert_eq!(answer(&mut app, "/outside").await, (StatusCode::OK, "outside".to_owned()));
        release.send(true).unwrap();
        assert_eq!(held.await.unwrap(), (StatusCode::OK, "held".to_owned()));
        assert_eq!(answer(&mut app, "/other").await, (StatusCode::OK, "other".to_owned()));
    }
}
