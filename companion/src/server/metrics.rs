//! Counts every HTTP answer in the service's [`Metrics`]: one middleware, outside the time
//! limit, so that it sees the final status of every route, timeouts' 503s included.
//!
//! A request is classed by the route it matched (never by its path, which the client chooses),
//! and the class and status pick the counters ([`answer_counters`]).

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use super::routes::{JWKS_ROUTE, TOKENS_ROUTE, TOKEN_ROUTE};
use crate::metrics::{Counter, Metrics};

/// Which kind of route answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// The public key-set route.
    Jwks,
    /// An admin route (`/v1/tokens…`).
    Admin,
    /// Anything else: `/metrics`, unknown paths.
    Other,
}

impl RouteClass {
    /// The class of a matched route (`None`: no route matched).
    fn of(route: Option<&str>) -> Self {
        match route {
            Some(JWKS_ROUTE) => Self::Jwks,
            Some(TOKENS_ROUTE | TOKEN_ROUTE) => Self::Admin,
            _ => Self::Other,
        }
    }
}

/// Middleware counting the answer of every request (see [`answer_counters`]).
pub async fn count_answers(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let class = RouteClass::of(request.extensions().get::<MatchedPath>().map(MatchedPath::as_str));
    let response = next.run(request).await;
    for counter in answer_counters(class, response.status()) {
        metrics.count(counter);
    }
    response
}

/// The counters an answer adds to: the route's own family (key-set results, admin status
/// classes), authentication failures, and 5xx errors of any route.
pub fn answer_counters(class: RouteClass, status: StatusCode) -> impl Iterator<Item = Counter> {
    let by_route = match (class, status.as_u16()) {
        (RouteClass::Jwks, 200) => Some(Counter::JwksSent),
        (RouteClass::Jwks, 304) => Some(Counter::JwksNotModified),
        (RouteClass::Jwks, 400) => Some(Counter::JwksBadRequest),
        (RouteClass::Jwks, 503) => Some(Counter::JwksUnavailable),
        (RouteClass::Admin, 200..=299) => Some(Counter::Admin2xx),
        (RouteClass::Admin, 400..=499) => Some(Counter::Admin4xx),
        (RouteClass::Admin, 500..=599) => Some(Counter::Admin5xx),
        _ => None,
    };
    // Only the admin authentication answers 401.
    let auth_failure =
        (class == RouteClass::Admin && status == StatusCode::UNAUTHORIZED).then_some(Counter::AuthFailures);
    let error = status.is_server_error().then_some(Counter::Errors);
    [by_route, auth_failure, error].into_iter().flatten()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::Service;

    use super::*;
    use crate::server::limits::{time_limit, REQUEST_TIMEOUT};

    #[test]
    fn classes_routes() {
        assert_eq!(RouteClass::of(Some("/v1/namespaces/{namespace}/jwks.json")), RouteClass::Jwks);
        assert_eq!(RouteClass::of(Some("/v1/tokens")), RouteClass::Admin);
        assert_eq!(RouteClass::of(Some("/v1/tokens/{id}")), RouteClass::Admin);
        assert_eq!(RouteClass::of(Some("/metrics")), RouteClass::Other);
        assert_eq!(RouteClass::of(None), RouteClass::Other);
    }

    #[test]
    fn picks_counters_by_route_and_status() {
        use Counter::*;
        use RouteClass::*;
        let cases: &[(RouteClass, u16, &[Counter])] = &[
            (Jwks, 200, &[JwksSent]),
            (Jwks, 304, &[JwksNotModified]),
            (Jwks, 400, &[JwksBadRequest]),
            (Jwks, 503, &[JwksUnavailable, Errors]),
            (Jwks, 500, &[Errors]),
            (Jwks, 404, &[]),
            (Admin, 201, &[Admin2xx]),
            (Admin, 204, &[Admin2xx]),
            (Admin, 401, &[Admin4xx, AuthFailures]),
            (Admin, 409, &[Admin4xx]),
            (Admin, 413, &[Admin4xx]),
            (Admin, 500, &[Admin5xx, Errors]),
            (Admin, 503, &[Admin5xx, Errors]),
            (Other, 200, &[]),
            (Other, 401, &[]),
            (Other, 404, &[]),
            (Other, 503, &[Errors]),
        ];
        for (class, status, want) in cases {
            let got: Vec<Counter> = answer_counters(*class, StatusCode::from_u16(*status).unwrap()).collect();
            assert_eq!(got, *want, "{class:?} {status}");
        }
    }

    async fn status(app: &mut Router, path: &str) -> StatusCode {
        app.call(Request::get(path).body(Body::empty()).unwrap()).await.unwrap().status()
    }

    #[tokio::test(start_paused = true)]
    async fn counts_final_answers_timeouts_included() {
        let metrics = Arc::new(Metrics::default());
        let slow = || async {
            tokio::time::sleep(REQUEST_TIMEOUT * 2).await;
            "late"
        };
        // Layered as in `routes::router`: the counting outside the time limit.
        let mut app = Router::new()
            .route(JWKS_ROUTE, get(slow))
            .route(TOKENS_ROUTE, get(|| async { StatusCode::UNAUTHORIZED }))
            .route(TOKEN_ROUTE, get(|| async { StatusCode::NO_CONTENT }))
            .fallback(|| async { StatusCode::NOT_FOUND })
            .layer(axum::middleware::from_fn(time_limit))
            .layer(axum::middleware::from_fn_with_state(Arc::clone(&metrics), count_answers));
        assert_eq!(status(&mut app, "/v1/namespaces/shop/jwks.json").await, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status(&mut app, "/v1/tokens").await, StatusCode::UNAUTHORIZED);
        assert_eq!(status(&mut app, "/v1/tokens/some-id").await, StatusCode::NO_CONTENT);
        // A path that only looks like a route is not one.
        assert_eq!(status(&mut app, "/v1/tokens/a/b").await, StatusCode::NOT_FOUND);
        let counted: Vec<(Counter, u64)> = Counter::ALL
            .iter()
            .map(|counter| (*counter, metrics.value(*counter)))
            .filter(|(_, value)| *value > 0)
            .collect();
        assert_eq!(
            counted,
            [
                (Counter::JwksUnavailable, 1),
                (Counter::Admin2xx, 1),
                (Counter::Admin4xx, 1),
                (Counter::AuthFailures, 1),
                (Counter::Errors, 1),
            ]
        );
    }
}
