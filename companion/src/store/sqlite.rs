//! SQLite backend: `DIR/tokengate.db`, WAL journal, `synchronous=FULL`, versioned migrations.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row};

use super::{NewToken, StoreError, TokenFilter, TokenRecord, TokenStore};
use crate::jwks::{published_cutoff, PublishedKey};

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "tokengate.db";

/// Schema migrations, applied in order; version `n` is `MIGRATIONS[n - 1]`. Append only.
const MIGRATIONS: &[&str] = &[r"
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

const RECORD_COLUMNS: &str = "id, namespace_id, function_id, description, created_at, expires_at, deleted_at";

/// A [`TokenStore`] on one SQLite connection.
pub struct SqliteStore {
    connection: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating it and the directory if needed) `dir/tokengate.db` and migrates it.
    pub fn open_in_dir(dir: &Path, now: i64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir { path: dir.to_path_buf(), source })?;
        let mut connection = Connection::open(dir.join(DATABASE_FILE))?;
        connection.busy_timeout(Duration::from_secs(5))?;
        // journal_mode answers with the mode now in force, so it is read, not executed.
        connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get::<_, String>(0))?;
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

    fn prepare(connection: &mut Connection, now: i64) -> Result<(), StoreError> {
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        migrate(connection, now)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.connection.lock().map_err(|_| StoreError::Poisoned)
    }
}

fn known_version() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

fn current_version(connection: &Connection) -> Result<i64, StoreError> {
    Ok(connection.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_version", [], |row| row.get(0))?)
}

/// Applies the migrations the database has not seen, all in one transaction.
fn migrate(connection: &mut Connection, now: i64) -> Result<(), StoreError> {
    let transaction = connection.transaction()?;
    transaction.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version    INTEGER NOT NULL PRIMARY KEY,
            applied_at INTEGER NOT NULL
        )",
    )?;
    let found = current_version(&transaction)?;
    let known = known_version();
    if found > known {
        return Err(StoreError::NewerSchema { found, known });
    }
    for (version, sql) in (1..).zip(MIGRATIONS.iter()).skip_while(|(version, _)| *version <= found) {
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
    fn create(&self, token: &NewToken) -> Result<(), StoreError> {
        let connection = self.lock()?;
        let inserted = connection.execute(
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
            Ok(_) => Ok(()),
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

    fn delete(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let connection = self.lock()?;
        let changed = connection
            .execute("UPDATE tokens SET deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL", params![id, now])?;
        Ok(changed == 1)
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
        let mut keys = Vec::new();
        for row in rows {
            let (id, bytes) = row?;
            let public_key = <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| StoreError::CorruptRow { id: id.clone(), reason: "public key is not 32 bytes" })?;
            keys.push(PublishedKey { id, public_key });
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwks::is_published;

    const NOW: i64 = 1_796_317_200;

    fn token(id: &str, namespace: &str, function: Option<&str>, created_at: i64) -> NewToken {
        NewToken {
            id: id.to_owned(),
            namespace_id: namespace.to_owned(),
            function_id: function.map(str::to_owned),
            description: format!("token {id}"),
            created_at,
            expires_at: None,
            public_key: [id.len() as u8; 32],
        }
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tokengate-store-{name}-{}", crate::token_id::generate().unwrap()));
        dir
    }

    #[test]
    fn create_get_list_delete() {
        let store = SqliteStore::open_in_memory(NOW).unwrap();
        store.create(&token("b", "shop", Some("cart"), NOW)).unwrap();
        store.create(&token("a", "shop", None, NOW)).unwrap();
        store.create(&token("c", "shop", Some("pay"), NOW - 5)).unwrap();
        store.create(&token("d", "other", None, NOW)).unwrap();

        let all = store.list(&TokenFilter { namespace_id: "shop".to_owned(), function_id: None }).unwrap();
        let ids: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["c", "a", "b"]);

        let cart =
            store.list(&TokenFilter { namespace_id: "shop".to_owned(), function_id: Some("cart".to_owned()) }).unwrap();
        assert_eq!(cart.len(), 1);
        assert_eq!(cart[0].function_id.as_deref(), Some("cart"));
        assert_eq!(cart[0].description, "token b");

        assert!(matches!(store.create(&token("a", "x", None, NOW)), Err(StoreError::DuplicateId(_))));

        assert_eq!(store.get("zz").unwrap(), None);
        assert!(store.delete("a", NOW + 1).unwrap());
        assert!(!store.delete("a", NOW + 2).unwrap());
        assert!(!store.delete("zz", NOW).unwrap());
        assert_eq!(store.get("a").unwrap().unwrap().deleted_at, Some(NOW + 1));
    }

    #[test]
    fn live_keys_follow_the_liveness_rule() {
        let store = SqliteStore::open_in_memory(NOW).unwrap();
        let cases: &[(&str, Option<i64>, bool)] = &[
            ("never", None, false),
            ("later", Some(NOW + 10), false),
            ("grace", Some(NOW - 3599), false),
            ("gone", Some(NOW - 3600), false),
            ("deleted", None, true),
        ];
        for (index, (id, expires_at, deleted)) in cases.iter().enumerate() {
            let mut new = token(id, "shop", None, NOW - 100 + index as i64);
            new.expires_at = *expires_at;
            store.create(&new).unwrap();
            if *deleted {
                store.delete(id, NOW - 1).unwrap();
            }
        }
        for now in [NOW - 7200, NOW, NOW + 11, NOW + 7200] {
            let live: Vec<String> =
                store.live_keys_for_namespace("shop", now).unwrap().into_iter().map(|k| k.id).collect();
            let expected: Vec<String> = cases
                .iter()
                .filter(|(id, expires_at, _)| {
                    let deleted_at = store.get(id).unwrap().unwrap().deleted_at;
                    is_published(*expires_at, deleted_at, now)
                })
                .map(|(id, _, _)| (*id).to_owned())
                .collect();
            assert_eq!(live, expected, "now = {now}");
        }
        assert_eq!(
            store.live_keys_for_namespace("shop", NOW).unwrap().iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            ["never", "later", "grace"]
        );
        assert!(store.live_keys_for_namespace("nobody", NOW).unwrap().is_empty());
    }

    #[test]
    fn file_database_survives_reopen_and_records_its_version() {
        let dir = temp_dir("reopen").join("nested");
        {
            let store = SqliteStore::open_in_dir(&dir, NOW).unwrap();
            assert_eq!(store.schema_version().unwrap(), known_version());
            store.create(&token("kept", "shop", None, NOW)).unwrap();
        }
        let store = SqliteStore::open_in_dir(&dir, NOW + 5).unwrap();
        assert_eq!(store.schema_version().unwrap(), known_version());
        assert_eq!(store.get("kept").unwrap().unwrap().namespace_id, "shop");
        let connection = store.lock().unwrap();
        let mode: String = connection.query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = connection.query_row("PRAGMA synchronous", [], |row| row.get(0)).unwrap();
        assert_eq!(sync, 2, "FULL");
        drop(connection);
        drop(store);
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = temp_dir("newer");
        drop(SqliteStore::open_in_dir(&dir, NOW).unwrap());
        let connection = Connection::open(dir.join(DATABASE_FILE)).unwrap();
        connection.execute("INSERT INTO schema_version VALUES (99, 0)", []).unwrap();
        drop(connection);
        assert!(matches!(SqliteStore::open_in_dir(&dir, NOW), Err(StoreError::NewerSchema { found: 99, .. })));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
