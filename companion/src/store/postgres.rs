//! PostgreSQL backend: one database shared by any number of replicas.
//!
//! - **No TLS**: connections use `NoTls`, so the database belongs on localhost or a trusted
//!   network; a URL asking for `sslmode=require` is refused rather than silently downgraded.
//! - **A small pool** of [`PostgresStore::POOL_SIZE`] connections, opened on demand. A connection that fails
//!   (PostgreSQL restarted, network cut) is closed with every idle one, and the call is retried
//!   once on a fresh connection, so a replica rides out a PostgreSQL restart. Writes are retried
//!   idempotently: a create or delete that did commit before the connection died is recognised.
//! - **Migrations** run in one transaction under `pg_advisory_xact_lock`, so replicas starting
//!   together apply each migration exactly once, one after the other.
//! - **Key cap under a lock**: a create counts the namespace's published keys and inserts in one
//!   transaction holding `pg_advisory_xact_lock(NAMESPACE_LOCK_CLASS, hashtext(namespace))`, so
//!   creates racing on several replicas cannot push a namespace past its cap.
//! - **No cache**: every call reads the table. (The service above caches each namespace's JWKS
//!   for at most a second; see [`crate::jwks_cache`].)

use std::fmt;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use postgres::config::{Host, SslMode};
use postgres::error::SqlState;
use postgres::{Client, Config, GenericClient, NoTls, Row};

use super::migrate::{self, Migrations};
use super::{
    published_key, with_causes, CreateOutcome, NewToken, StoreError, TokenFilter, TokenRecord, TokenStore,
    RECORD_COLUMNS,
};
use crate::jwks::{published_cutoff, PublishedKey};

/// Longest wait for a free connection when all [`PostgresStore::POOL_SIZE`] are busy.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection timeout, unless the URL sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long sent data may stay unacknowledged before the connection counts as dead, unless the
/// URL sets `tcp_user_timeout`: a vanished server fails a call instead of hanging it.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// Key of the advisory lock taken while migrating ("tokengat" in ASCII).
const MIGRATION_LOCK: i64 = 0x746f_6b65_6e67_6174;

/// Longest wait for the migration lock (and the tables) while another replica migrates.
const MIGRATION_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// First key of the per-namespace advisory locks ("tokg" in ASCII); the second is
/// `hashtext(namespace_id)`. Two-key advisory locks never collide with the single-key
/// [`MIGRATION_LOCK`]; two namespaces with the same hash merely take turns.
const NAMESPACE_LOCK_CLASS: i32 = 0x746f_6b67;

/// Longest wait for a namespace's lock while other creates in that namespace hold it.
const NAMESPACE_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations, applied in order; version `n` is `MIGRATIONS[n - 1]`. Append only, and
/// keep in step with the SQLite backend's. `COLLATE "C"` orders ids byte by byte, as SQLite does.
const MIGRATIONS: Migrations = &[r#"
    CREATE TABLE tokens (
        id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
        namespace_id TEXT COLLATE "C" NOT NULL,
        function_id  TEXT COLLATE "C",
        description  TEXT   NOT NULL,
        created_at   BIGINT NOT NULL,
        expires_at   BIGINT,
        public_key   BYTEA  NOT NULL CHECK (length(public_key) = 32),
        deleted_at   BIGINT
    );
    CREATE INDEX tokens_by_namespace ON tokens (namespace_id, created_at, id);
"#];

/// A `--database-url` that was not accepted.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidDatabaseUrl(String);

/// A parsed `postgres://USER:PASS@HOST:PORT/DB` URL. `Debug` and `Display` leave out the password.
#[derive(Clone)]
pub struct DatabaseUrl {
    config: Config,
    redacted: String,
}

impl DatabaseUrl {
    /// Parses a `postgres://` (or `postgresql://`) URL and fills in tokengate's connection defaults.
    pub fn parse(text: &str) -> Result<Self, InvalidDatabaseUrl> {
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            return Err(InvalidDatabaseUrl("expected a URL like postgres://USER:PASS@HOST:PORT/DB".to_owned()));
        }
        let mut config: Config =
            text.parse().map_err(|error: postgres::Error| InvalidDatabaseUrl(with_causes(&error)))?;
        if config.get_hosts().is_empty() {
            return Err(InvalidDatabaseUrl("the URL names no host".to_owned()));
        }
        if config.get_ssl_mode() == SslMode::Require {
            return Err(InvalidDatabaseUrl(
                "sslmode=require is not supported: tokengate connects to PostgreSQL without TLS".to_owned(),
            ));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("tokengate");
        }
        let redacted = redact(&config);
        Ok(Self { config, redacted })
    }
}

/// `postgres://USER@HOST:PORT/DB`: what the log may show of a URL.
fn redact(config: &Config) -> String {
    let user = config.get_user().map(|user| format!("{user}@")).unwrap_or_default();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let port = config.get_ports().get(index).or(config.get_ports().first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                #[cfg(unix)]
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    format!("postgres://{user}{}/{}", hosts.join(","), config.get_dbname().unwrap_or_default())
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted)
    }
}

/// Whether a failure means the connection is gone (rather than the statement being refused).
fn connection_lost(error: &StoreError) -> bool {
    let StoreError::Postgres(error) = error else {
        return false;
    };
    match error.code() {
        // No server answer at all: I/O error, closed socket, timeout.
        None => true,
        Some(code) => {
            code.code().starts_with("08")
                || [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW].contains(code)
        }
    }
}

/// Open connections: idle ones, and a count of those lent out.
struct Pool {
    config: Config,
    state: Mutex<PoolState>,
    returned: Condvar,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Client>,
    lent: usize,
}

/// A lent connection's place in the pool, given back on drop (also when a panic unwinds).
struct Slot<'a> {
    pool: &'a Pool,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Ok(mut state) = self.pool.state.lock() {
            state.lent = state.lent.saturating_sub(1);
        }
        self.pool.returned.notify_one();
    }
}

impl Pool {
    fn new(config: Config) -> Self {
        Self { config, state: Mutex::new(PoolState::default()), returned: Condvar::new() }
    }

    fn lock(&self) -> Result<MutexGuard<'_, PoolState>, StoreError> {
        self.state.lock().map_err(|_| StoreError::Poisoned)
    }

    /// An idle connection, or a new one if fewer than [`PostgresStore::POOL_SIZE`] are open; waits (bounded)
    /// for one to come back otherwise.
    fn check_out(&self) -> Result<(Client, Slot<'_>), StoreError> {
        let deadline = Instant::now() + CHECKOUT_TIMEOUT;
        let mut state = self.lock()?;
        loop {
            if let Some(client) = state.idle.pop() {
                state.lent += 1;
                drop(state);
                return Ok((client, Slot { pool: self }));
            }
            if state.lent < PostgresStore::POOL_SIZE {
                state.lent += 1;
                drop(state);
                let slot = Slot { pool: self };
                let client = self.config.connect(NoTls)?;
                return Ok((client, slot));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::PoolTimeout(CHECKOUT_TIMEOUT));
            }
            state = self.returned.wait_timeout(state, left).map_err(|_| StoreError::Poisoned)?.0;
        }
    }

    /// Runs `op` on a pooled connection. The outer error is a failure to get a connection, the
    /// inner one is `op`'s; a connection that was lost is closed rather than pooled again.
    fn with_client<T>(
        &self,
        op: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<Result<T, StoreError>, StoreError> {
        let (mut client, slot) = self.check_out()?;
        let result = op(&mut client);
        let lost = result.as_ref().err().is_some_and(connection_lost) || client.is_closed();
        if !lost {
            self.lock()?.idle.push(client);
        }
        drop(slot);
        Ok(result)
    }

    /// Removes the idle connections, for the caller to close outside the lock.
    fn take_idle(&self) -> Vec<Client> {
        self.state.lock().map(|mut state| std::mem::take(&mut state.idle)).unwrap_or_default()
    }
}

/// Which run of an operation this is; a retry must cope with a first run that did commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    First,
    Retry,
}

/// A [`TokenStore`] in a PostgreSQL database, safe to share between replicas.
pub struct PostgresStore {
    pool: Pool,
}

impl PostgresStore {
    /// Most connections one replica keeps open.
    pub const POOL_SIZE: usize = 4;

    /// Connects and brings the schema up to date (waiting for any replica migrating just now).
    pub fn open(url: &DatabaseUrl, now: i64) -> Result<Self, StoreError> {
        let store = Self { pool: Pool::new(url.config.clone()) };
        store.run(|client, _| migrate(client, now))?;
        Ok(store)
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.run(|client, _| current_version(client))
    }

    /// The newest schema version this build knows.
    pub fn known_schema_version() -> i64 {
        migrate::known_version(MIGRATIONS)
    }

    /// Runs `op`, once more on a fresh connection if the connection was lost under it.
    fn run<T>(&self, mut op: impl FnMut(&mut Client, Attempt) -> Result<T, StoreError>) -> Result<T, StoreError> {
        match self.pool.with_client(|client| op(client, Attempt::First))? {
            Err(error) if connection_lost(&error) => {
                eprintln!("tokengate: PostgreSQL connection lost ({error}); reconnecting");
                // After a server restart every idle connection is dead too: close them all.
                drop(self.pool.take_idle());
                self.pool.with_client(|client| op(client, Attempt::Retry))?
            }
            result => result,
        }
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Closing a client blocks on its own small runtime, which tokio forbids inside async
        // code; the server may drop the store there, so the idle clients close on a plain thread.
        let idle = self.pool.take_idle();
        if !idle.is_empty() {
            let _ = std::thread::spawn(move || drop(idle)).join();
        }
    }
}

fn current_version(client: &mut impl GenericClient) -> Result<i64, StoreError> {
    let row = client.query_one("SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_version", &[])?;
    Ok(row.try_get(0)?)
}

/// Applies the migrations the database has not seen, in one transaction that holds the
/// migration lock until it commits.
fn migrate(client: &mut Client, now: i64) -> Result<(), StoreError> {
    let mut transaction = client.transaction()?;
    // Bounded: a replica stuck migrating must not hang the others' start forever.
    transaction.batch_execute(&format!("SET LOCAL lock_timeout = '{}s'", MIGRATION_LOCK_TIMEOUT.as_secs()))?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    transaction.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version    BIGINT NOT NULL PRIMARY KEY,
            applied_at BIGINT NOT NULL
        )",
    )?;
    let found = current_version(&mut transaction)?;
    for (version, sql) in migrate::pending(MIGRATIONS, found)? {
        transaction.batch_execute(sql)?;
        transaction.execute("INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)", &[&version, &now])?;
    }
    transaction.commit()?;
    Ok(())
}

fn record_from_row(row: &Row) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        id: row.try_get(0)?,
        namespace_id: row.try_get(1)?,
        function_id: row.try_get(2)?,
        description: row.try_get(3)?,
        created_at: row.try_get(4)?,
        expires_at: row.try_get(5)?,
        deleted_at: row.try_get(6)?,
    })
}

/// Counts the namespace's published keys (but `token`'s own, recorded already if this is the
/// retry of a create that committed) and inserts `token` if there is room, all under the
/// namespace's lock.
fn insert_within_cap(client: &mut Client, token: &NewToken, max_published: u32) -> Result<CreateOutcome, StoreError> {
    let mut transaction = client.transaction()?;
    transaction.batch_execute(&format!("SET LOCAL lock_timeout = '{}ms'", NAMESPACE_LOCK_TIMEOUT.as_millis()))?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", &[&NAMESPACE_LOCK_CLASS, &token.namespace_id])?;
    let published: i64 = transaction
        .query_one(
            "SELECT COUNT(*) FROM tokens
             WHERE namespace_id = $1 AND id <> $2 AND deleted_at IS NULL
               AND (expires_at IS NULL OR expires_at > $3)",
            &[&token.namespace_id, &token.id, &published_cutoff(token.created_at)],
        )?
        .try_get(0)?;
    if published >= i64::from(max_published) {
        return Ok(CreateOutcome::NamespaceFull);
    }
    insert(&mut transaction, token)?;
    transaction.commit()?;
    Ok(CreateOutcome::Created)
}

fn insert(client: &mut impl GenericClient, token: &NewToken) -> Result<(), StoreError> {
    let inserted = client.execute(
        "INSERT INTO tokens
            (id, namespace_id, function_id, description, created_at, expires_at, public_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &token.id,
            &token.namespace_id,
            &token.function_id,
            &token.description,
            &token.created_at,
            &token.expires_at,
            &token.public_key.as_slice(),
        ],
    );
    match inserted {
        Ok(_) => Ok(()),
        Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            Err(StoreError::DuplicateId(token.id.clone()))
        }
        Err(error) => Err(error.into()),
    }
}

impl TokenStore for PostgresStore {
    fn create(&self, token: &NewToken, max_published: u32) -> Result<CreateOutcome, StoreError> {
        self.run(|client, attempt| match insert_within_cap(client, token, max_published) {
            // The first run committed before its connection died: the row holds our fresh key.
            Err(StoreError::DuplicateId(_)) if attempt == Attempt::Retry => {
                let stored = client.query_opt("SELECT public_key FROM tokens WHERE id = $1", &[&token.id])?;
                match stored.map(|row| row.try_get::<_, Vec<u8>>(0)).transpose()? {
                    Some(key) if key == token.public_key => Ok(CreateOutcome::Created),
                    _ => Err(StoreError::DuplicateId(token.id.clone())),
                }
            }
            result => result,
        })
    }

    fn list(&self, filter: &TokenFilter) -> Result<Vec<TokenRecord>, StoreError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM tokens
             WHERE namespace_id = $1 AND ($2::TEXT IS NULL OR function_id = $2)
             ORDER BY created_at, id"
        );
        self.run(|client, _| {
            client.query(&sql, &[&filter.namespace_id, &filter.function_id])?.iter().map(record_from_row).collect()
        })
    }

    fn get(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!("SELECT {RECORD_COLUMNS} FROM tokens WHERE id = $1");
        self.run(|client, _| client.query_opt(&sql, &[&id])?.as_ref().map(record_from_row).transpose())
    }

    fn delete(&self, id: &str, now: i64) -> Result<Option<String>, StoreError> {
        self.run(|client, attempt| {
            let deleted = client.query_opt(
                "UPDATE tokens SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL RETURNING namespace_id",
                &[&id, &now],
            )?;
            if let Some(row) = deleted {
                return Ok(Some(row.try_get(0)?));
            }
            if attempt == Attempt::Retry {
                // The first run may have committed before its connection died.
                let row = client.query_opt("SELECT namespace_id, deleted_at FROM tokens WHERE id = $1", &[&id])?;
                if let Some(row) = row {
                    if row.try_get::<_, Option<i64>>(1)? == Some(now) {
                        return Ok(Some(row.try_get(0)?));
                    }
                }
            }
            Ok(None)
        })
    }

    fn live_keys_for_namespace(&self, namespace_id: &str, now: i64) -> Result<Vec<PublishedKey>, StoreError> {
        let cutoff = published_cutoff(now);
        self.run(|client, _| {
            let rows = client.query(
                "SELECT id, public_key FROM tokens
                 WHERE namespace_id = $1 AND deleted_at IS NULL
                   AND (expires_at IS NULL OR expires_at > $2)
                 ORDER BY created_at, id",
                &[&namespace_id, &cutoff],
            )?;
            rows.iter()
                .map(|row| {
                    let public_key: Vec<u8> = row.try_get(1)?;
                    published_key(row.try_get(0)?, &public_key)
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    //! URL handling. The store itself is tested against a real PostgreSQL by
    //! `tests/service/store.rs` (and the server by the rest of that suite).

    use super::*;

    #[test]
    fn parses_urls_and_keeps_the_password_out_of_sight() {
        let url = DatabaseUrl::parse("postgres://tokengate:s3cret@127.0.0.1:5432/tokengate").unwrap();
        assert_eq!(url.to_string(), "postgres://tokengate@127.0.0.1:5432/tokengate");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(url.config.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(url.config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(url.config.get_application_name(), Some("tokengate"));

        let url = DatabaseUrl::parse("postgresql://db.internal/tokens?connect_timeout=2").unwrap();
        assert_eq!(url.to_string(), "postgres://db.internal:5432/tokens");
        assert_eq!(url.config.get_connect_timeout(), Some(&Duration::from_secs(2)));
    }

    #[test]
    fn refuses_unusable_urls() {
        let cases: &[(&str, &str)] = &[
            ("host=localhost user=tokengate", "postgres://USER:PASS@HOST:PORT/DB"),
            ("mysql://u:p@h/db", "postgres://USER:PASS@HOST:PORT/DB"),
            ("postgres://u:p@h:notaport/db", "invalid"),
            ("postgres://u:p@h/db?sslmode=require", "without TLS"),
        ];
        for (text, want) in cases {
            let error = DatabaseUrl::parse(text).unwrap_err().to_string();
            assert!(error.contains(want), "{text}: {error}");
            assert!(!error.contains(":p@"), "{text}: {error}");
        }
    }

    #[test]
    fn tells_lost_connections_from_refused_statements() {
        assert!(!connection_lost(&StoreError::DuplicateId("x".to_owned())));
        assert!(!connection_lost(&StoreError::Poisoned));
    }
}
