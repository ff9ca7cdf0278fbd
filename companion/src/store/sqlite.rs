//! SQLite backend: `DIR/tokengate.db`, WAL journal, `synchronous=FULL`, versioned migrations.
//!
//! With `synchronous=FULL` a create is on disk before its 201 is sent, so it survives even a
//! SIGKILL or a power cut right after.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row};

use super::migrate::{self, Migrations};
use super::{published_key, CreateOutcome, NewToken, StoreError, TokenFilter, TokenRecord, TokenStore, RECORD_COLUMNS};
use crate::jwks::{published_cutoff, PublishedKey};

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "tokengate.db";

/// How long a connection waits for another one (of this or another process) to let go.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations, applied in order; version `n` is `MIGRATIONS[n - 1]`. Append only, and
/// keep in step with the PostgreSQL backend's.
const MIGRATIONS: Migrations = &[r"
    CREATE TABLE tokens (
        id           TEXT    NOT NULL PRIMARY KEY,
        namespace_id TEXT    NOT NULL,
        function_id  TEXT,
        description  TEXT    NOT NULL,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER,
        public_key   BLOB    NOT NULL CHECK (length(public_key) = 32),
        deleted_at   INTEGER
    );
    CREATE INDEX tokens_by_namespace ON tokens (namespace_id, created_at, id);
"];

/// A [`TokenStore`] on one SQLite connection.
pub struct SqliteStore {
    connection: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating it and the directory if needed) `dir/tokengate.db` and migrates it.
    pub fn open_in_dir(dir: &Path, now: i64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir { path: dir.to_path_buf(), source })?;
        let mut connection = Connection::open(dir.join(DATABASE_FILE))?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        enable_wal(&connection)?;
        Self::prepare(&mut connection, now)?;
        Ok(Self { connection: Mutex::new(connection) })
    }

    /// An in-memory database with the same schema, for tests.
    pub fn open_in_memory(now: i64) -> Result<Self, StoreError> {
        let mut connection = Connection::open_in_memory()?;
        Self::prepare(&mut connection, now)?;
        Ok(Self { connection: Mutex::new(connection) })
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let connection = self.lock()?;
        current_version(&connection)
    }

    /// The newest schema version this build knows.
    pub fn known_schema_version() -> i64 {
        migrate::known_version(MIGRATIONS)
    }

    fn prepare(connection: &mut Connection, now: i64) -> Result<(), StoreError> {
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        migrate(connection, now)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.connection.lock().map_err(|_| StoreError::Poisoned)
    }
}

/// Switches the database to WAL. Changing the journal mode needs the file to itself, and SQLite
/// answers BUSY at once (without waiting) while another process opens it: retry, for a bounded time.
fn enable_wal(connection: &Connection) -> Result<(), StoreError> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        // journal_mode answers with the mode now in force, so it is read, not executed.
        match connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(failure, _))
                if failure.code == ErrorCode::DatabaseBusy && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(error) => return Err(error.into()),
        }
    }
}

fn current_version(connection: &Connection) -> Result<i64, StoreError> {
    Ok(connection.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_version", [], |row| row.get(0))?)
}

/// Applies the migrations the database has not seen, all in one (write-locking) transaction.
fn migrate(connection: &mut Connection, now: i64) -> Result<(), StoreError> {
    let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    transaction.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version    INTEGER NOT NULL PRIMARY KEY,
            applied_at INTEGER NOT NULL
        )",
    )?;
    for (version, sql) in migrate::pending(MIGRATIONS, current_version(&transaction)?)? {
        transaction.execute_batch(sql)?;
        transaction
            .execute("INSERT INTO schema_version (version, applied_at) VALUES (?1, ?2)", params![version, now])?;
    }
    transaction.commit()?;
    Ok(())
}

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: row.get(0)?,
        namespace_id: row.get(1)?,
        function_id: row.get(2)?,
        description: row.get(3)?,
        created_at: row.get(4)?,
        expires_at: row.get(5)?,
        deleted_at: row.get(6)?,
    })
}

impl TokenStore for SqliteStore {
    fn create(&self, token: &NewToken, max_published: u32) -> Result<CreateOutcome, StoreError> {
        let mut connection = self.lock()?;
        // IMMEDIATE takes the database's write lock before the count, so no other writer (of this
        // or another process) can slip a key in between the count and the insert.
        let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let published: i64 = transaction.query_row(
            "SELECT COUNT(*) FROM tokens
             WHERE namespace_id = ?1 AND deleted_at IS NULL
               AND (expires_at IS NULL OR expires_at > ?2)",
            params![token.namespace_id, published_cutoff(token.created_at)],
            |row| row.get(0),
        )?;
        if published >= i64::from(max_published) {
            return Ok(CreateOutcome::NamespaceFull);
        }
        let inserted = transaction.execute(
            "INSERT INTO tokens
                (id, namespace_id, function_id, description, created_at, expires_at, public_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                token.id,
                token.namespace_id,
                token.function_id,
                token.description,
                token.created_at,
                token.expires_at,
                token.public_key.as_slice(),
            ],
        );
        match inserted {
            Ok(_) => {
                transaction.commit()?;
                Ok(CreateOutcome::Created)
            }
            Err(rusqlite::Error::SqliteFailure(failure, _)) if failure.code == ErrorCode::ConstraintViolation => {
                Err(StoreError::DuplicateId(token.id.clone()))
            }
            Err(other) => Err(other.into()),
        }
    }

    fn list(&self, filter: &TokenFilter) -> Result<Vec<TokenRecord>, StoreError> {
        let connection = self.lock()?;
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM tokens
             WHERE namespace_id = ?1 AND (?2 IS NULL OR function_id = ?2)
             ORDER BY created_at, id"
        ))?;
        let rows = statement.query_map(params![filter.namespace_id, filter.function_id], record_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn get(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let connection = self.lock()?;
        let mut statement = connection.prepare_cached(&format!("SELECT {RECORD_COLUMNS} FROM tokens WHERE id = ?1"))?;
        Ok(statement.query_row(params![id], record_from_row).optional()?)
    }

    fn delete(&self, id: &str, now: i64) -> Result<Option<String>, StoreError> {
        let connection = self.lock()?;
        let mut statement = connection.prepare_cached(
            "UPDATE tokens SET deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL RETURNING namespace_id",
        )?;
        Ok(statement.query_row(params![id, now], |row| row.get(0)).optional()?)
    }

    fn live_keys_for_namespace(&self, namespace_id: &str, now: i64) -> Result<Vec<PublishedKey>, StoreError> {
        let connection = self.lock()?;
        let mut statement = connection.prepare_cached(
            "SELECT id, public_key FROM tokens
             WHERE namespace_id = ?1 AND deleted_at IS NULL
               AND (expires_at IS NULL OR expires_at > ?2)
             ORDER BY created_at, id",
        )?;
        let rows = statement.query_map(params![namespace_id, published_cutoff(now)], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
        })?;
        rows.map(|row| {
            let (id, public_key) = row?;
            published_key(id, &public_key)
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    //! SQLite-only behaviour. The behaviour every store shares is tested on both backends by
    //! `tests/service/store.rs`.

    use super::*;

    const NOW: i64 = 1_796_317_200;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("tokengate-store-{name}-{}", crate::token_id::generate().unwrap()))
    }

    #[test]
    fn file_database_uses_wal_and_full_sync() {
        let dir = temp_dir("pragmas");
        let store = SqliteStore::open_in_dir(&dir, NOW).unwrap();
        let connection = store.lock().unwrap();
        let mode: String = connection.query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = connection.query_row("PRAGMA synchronous", [], |row| row.get(0)).unwrap();
        assert_eq!(sync, 2, "FULL");
        drop(connection);
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn corrupt_keys_are_reported_not_published() {
        let store = SqliteStore::open_in_memory(NOW).unwrap();
        store
            .lock()
            .unwrap()
            .execute_batch(
                "PRAGMA ignore_check_constraints = ON;
                 INSERT INTO tokens (id, namespace_id, description, created_at, public_key)
                 VALUES ('short', 'shop', 'd', 0, x'00');",
            )
            .unwrap();
        assert!(matches!(
            store.live_keys_for_namespace("shop", NOW),
            Err(StoreError::CorruptRow { id, .. }) if id == "short"
        ));
    }
}
