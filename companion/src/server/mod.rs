//! `tokengate serve`: the key service. Opens the store, binds, serves the API until SIGINT or
//! SIGTERM, then drains in-flight requests and exits. What it takes on at once is bounded
//! (`limits`).

mod access_log;
mod auth;
pub mod body;
pub mod config;
pub mod console;
mod error;
pub mod limits;
pub mod metrics;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::{AdminToken, ConfigError, ServerConfig, StoreConfig};
pub use error::ApiError;
pub use routes::{router, AppState};

use crate::clock::unix_now;
use crate::service::TokenService;
use crate::store::{PostgresStore, SqliteStore, StoreError, TokenStore};

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The database could not be opened or migrated.
    #[error("cannot open the token store: {0}")]
    Store(#[from] StoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The async runtime could not start, or serving failed.
    #[error("server I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens (and migrates) the configured store.
pub fn open_store(config: &StoreConfig, now: i64) -> Result<Arc<dyn TokenStore>, StoreError> {
    Ok(match config {
        StoreConfig::Sqlite { data_dir } => Arc::new(SqliteStore::open_in_dir(data_dir, now)?),
        StoreConfig::Postgres(url) => Arc::new(PostgresStore::open(url, now)?),
    })
}

/// Runs the key service until SIGINT or SIGTERM.
pub fn serve(config: ServerConfig) -> Result<(), ServeError> {
    let store = open_store(&config.store, unix_now())?;
    let service = TokenService::new(Arc::clone(&store), &config.issuer, unix_now)
        .with_max_keys_per_namespace(config.max_keys_per_namespace);
    let state = AppState { service, admin_token: Arc::new(config.admin_token) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(limits::BLOCKING_THREADS)
        .enable_all()
        .build()?;
    let served = runtime.block_on(async {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServeError::Bind { addr: config.listen, source })?;
        let address = listener.local_addr()?;
        eprintln!(
            "tokengate: listening on http://{address} (store {}, issuer {}, at most {} keys per namespace)",
            config.store, config.issuer, config.max_keys_per_namespace
        );
        eprintln!("tokengate: tokens console at http://{address}{}", console::CONSOLE_ROUTE);
        axum::serve(listener, router(state)).with_graceful_shutdown(shutdown_signal()).await?;
        eprintln!("tokengate: stopped");
        Ok(())
    });
    // The store is closed here, after the runtime and its blocking tasks are gone: a
    // PostgreSQL client must not be closed from async code.
    drop(runtime);
    drop(store);
    served
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => eprintln!("tokengate: SIGINT, shutting down"),
        () = terminate => eprintln!("tokengate: SIGTERM, shutting down"),
    }
}
