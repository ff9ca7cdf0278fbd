//! The HTTP API: the public JWKS route, the admin token routes and `/metrics`, as thin handlers
//! over [`TokenService`], the JWKS and admin routes each with its own budget of requests in
//! flight (see [`super::limits`]); and the tokens console ([`super::console`]), a static page
//! over the admin routes. Every answer is counted (see [`super::metrics`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Json, Router};
use serde::Deserialize;

use super::access_log::log_request;
use super::auth::require_admin;
use super::body::{parse_create, BODY_LIMIT_BYTES};
use super::config::AdminToken;
use super::console;
use super::error::ApiError;
use super::limits::{request_budget, time_limit, ADMIN_REQUESTS, PUBLIC_REQUESTS};
use super::metrics::count_answers;
use crate::api::{CreatedToken, TokenList, TokenMetadata};
use crate::jwks::if_none_match_hits;
use crate::metrics::EXPOSITION_CONTENT_TYPE;
use crate::service::TokenService;
use crate::store::TokenFilter;
use crate::token_id::looks_like_token_id;
use crate::validate::check_id;

/// `Cache-Control` of the JWKS: a cache between the key service and Envoy may keep the document
/// but must revalidate it (`ETag`, a cheap 304) on every fetch, so a deleted token's key cannot
/// outlive its deletion in a cache.
pub const JWKS_CACHE_CONTROL: &str = "no-cache";

/// The public key-set route.
pub const JWKS_ROUTE: &str = "/v1/namespaces/{namespace}/jwks.json";
/// The admin route to create and list tokens.
pub const TOKENS_ROUTE: &str = "/v1/tokens";
/// The admin route to show and delete one token.
pub const TOKEN_ROUTE: &str = "/v1/tokens/{id}";
/// The Prometheus metrics.
pub const METRICS_ROUTE: &str = "/metrics";

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Token operations.
    pub service: TokenService,
    /// The admin API's bearer token.
    pub admin_token: Arc<AdminToken>,
}

/// The whole API: routes, their request budgets, admin authentication, body limit, time limit,
/// answer counting, access log.
pub fn router(state: AppState) -> Router {
    let public = Router::new().route(JWKS_ROUTE, get(namespace_jwks)).route_layer(request_budget(PUBLIC_REQUESTS));
    // Authentication wraps the budget: unauthenticated calls are refused without taking a turn.
    let admin = Router::new()
        .route(TOKENS_ROUTE, get(list_tokens).post(create_token))
        .route(TOKEN_ROUTE, get(show_token).delete(delete_token))
        .route_layer(request_budget(ADMIN_REQUESTS))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin))
        .layer(middleware::map_response(no_store));
    // Outside both budgets: it reads a few atomics, so a JWKS flood cannot make it wait.
    let scrape = Router::new().route(METRICS_ROUTE, get(metrics_exposition));
    // Constants from the binary: no budget to take, nothing secret to guard.
    let console = console::routes();
    let counted = Arc::clone(state.service.metrics());
    Router::new()
        .merge(public)
        .merge(admin)
        .merge(scrape)
        .merge(console)
        .fallback(|| async { ApiError::NotFound("no such route") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(middleware::from_fn(time_limit))
        // Outside the time limit, so that its 503s are counted too.
        .layer(middleware::from_fn_with_state(counted, count_answers))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// `GET /metrics`: the Prometheus text exposition; public like the JWKS, and it names no
/// namespace, token or client.
async fn metrics_exposition(State(state): State<AppState>) -> Response {
    let headers = [(header::CONTENT_TYPE, EXPOSITION_CONTENT_TYPE), (header::CACHE_CONTROL, "no-store")];
    (headers, state.service.metrics().render()).into_response()
}

/// Admin answers (one of them carries a token) must not be kept by any cache.
async fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /v1/namespaces/{namespace}/jwks.json`: the published keys, with ETag revalidation;
/// from the service's cache (at most a second old), so a flood of these costs no store work.
async fn namespace_jwks(
    State(state): State<AppState>,
    namespace: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Ok(Path(namespace)) = namespace else {
        return Err(ApiError::NotFound("no such namespace"));
    };
    check_id(&namespace).map_err(|error| ApiError::field("namespace_id", error))?;
    let document = state.service.jwks(namespace).await?;
    let revalidated = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| if_none_match_hits(value, &document.etag));
    let caching = [(header::CACHE_CONTROL, JWKS_CACHE_CONTROL.to_owned()), (header::ETAG, document.etag)];
    if revalidated {
        return Ok((StatusCode::NOT_MODIFIED, caching).into_response());
    }
    Ok((StatusCode::OK, caching, [(header::CONTENT_TYPE, "application/json")], document.body).into_response())
}

/// `POST /v1/tokens`: mint a token; the only answer that ever carries one.
async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::body(rejection.body_text())
        }
    })?;
    let request = parse_create(&headers, &body, state.service.now())?;
    let created: CreatedToken = state.service.create(request).await?;
    let location = format!("/v1/tokens/{}", created.metadata.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(created)).into_response())
}

/// Query of `GET /v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    namespace_id: Option<String>,
    function_id: Option<String>,
}

/// `GET /v1/tokens?namespace_id=NS[&function_id=FN]`: metadata only, never tokens.
async fn list_tokens(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<TokenList>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::body(rejection.body_text()))?;
    let Some(namespace_id) = query.namespace_id else {
        return Err(ApiError::field("namespace_id", "is required"));
    };
    check_id(&namespace_id).map_err(|error| ApiError::field("namespace_id", error))?;
    if let Some(function_id) = &query.function_id {
        check_id(function_id).map_err(|error| ApiError::field("function_id", error))?;
    }
    let filter = TokenFilter { namespace_id, function_id: query.function_id };
    Ok(Json(TokenList { tokens: state.service.list(filter).await? }))
}

/// The token id of a path, or 404 for anything that cannot be one.
fn token_id_of(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    match id {
        Ok(Path(id)) if looks_like_token_id(&id) => Ok(id),
        _ => Err(ApiError::NotFound("no such token")),
    }
}

/// `GET /v1/tokens/{id}`: one token's metadata.
async fn show_token(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<TokenMetadata>, ApiError> {
    let id = token_id_of(id)?;
    match state.service.get(id).await? {
        Some(metadata) => Ok(Json(metadata)),
        None => Err(ApiError::NotFound("no such token")),
    }
}

/// `DELETE /v1/tokens/{id}`: revoke; the key leaves the JWKS at once.
async fn delete_token(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = token_id_of(id)?;
    if state.service.delete(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("no such token, or already deleted"))
    }
}
