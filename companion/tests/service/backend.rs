//! The store a test runs on: SQLite in a temp dir, or a fresh PostgreSQL database of its own.
//!
//! PostgreSQL tests need `TOKENGATE_TEST_DATABASE_URL` (a role that may create databases;
//! `make postgres` provides one). Each test creates its own database from it, named
//! `tokengate_test_*`, and drops it at the end, so tests run in parallel. Without the variable
//! the PostgreSQL tests fail when `CI` or `TOKENGATE_REQUIRE_POSTGRES=1` is set, and otherwise
//! pass after a warning on stderr that names each skipped test (never silently).

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, Once, PoisonError};

use postgres::{Client, NoTls};
use tokengate_cli::store::{DatabaseUrl, PostgresStore, SqliteStore, StoreError, TokenStore};

use crate::support::TempDir;

/// Where PostgreSQL tests create their databases.
pub const TEST_DATABASE_URL_ENV: &str = "TOKENGATE_TEST_DATABASE_URL";

/// What `make postgres` sets up.
const MAKE_POSTGRES_URL: &str = "postgres://tokengate:tokengate@127.0.0.1:5432/tokengate";

/// Declares `$test::sqlite` and `$test::postgres`, each calling `$test(backend)`.
macro_rules! on_each_backend {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[test]
            fn sqlite() {
                super::$test(crate::backend::Backend::sqlite(stringify!($test)));
            }

            #[test]
            fn postgres() {
                if let Some(backend) = crate::backend::Backend::postgres(concat!(module_path!(), "::postgres")) {
                    super::$test(backend);
                }
            }
        }
    )*};
}
pub(crate) use on_each_backend;

/// A store for one test.
pub enum Backend {
    /// `tokengate.db` in `DIR/data` (created by whoever opens it first).
    Sqlite(TempDir),
    /// A database of its own, dropped at the end.
    Postgres(TestDatabase),
}

impl Backend {
    pub fn sqlite(test: &str) -> Self {
        Self::Sqlite(TempDir::new(test))
    }

    /// A fresh PostgreSQL database, or `None` (after a warning) if PostgreSQL tests may be skipped.
    pub fn postgres(test: &str) -> Option<Self> {
        let admin_url = postgres_server(test)?;
        Some(Self::Postgres(TestDatabase::create(&admin_url, test)))
    }

    /// The SQLite data directory.
    pub fn data_dir(&self) -> Option<PathBuf> {
        match self {
            Self::Sqlite(dir) => Some(dir.0.join("data")),
            Self::Postgres(_) => None,
        }
    }

    /// The `tokengate serve` arguments that choose this store.
    pub fn serve_args(&self) -> Vec<String> {
        match self {
            Self::Sqlite(dir) => vec!["--data-dir".to_owned(), dir.0.join("data").display().to_string()],
            Self::Postgres(database) => vec!["--database-url".to_owned(), database.url.clone()],
        }
    }

    /// Opens (and migrates) the store as the server does.
    pub fn open(&self, now: i64) -> Result<OpenStore, StoreError> {
        Ok(match self {
            Self::Sqlite(dir) => OpenStore::Sqlite(SqliteStore::open_in_dir(&dir.0.join("data"), now)?),
            Self::Postgres(database) => {
                OpenStore::Postgres(Box::new(PostgresStore::open(&DatabaseUrl::parse(&database.url).unwrap(), now)?))
            }
        })
    }

    /// Runs SQL on the store's database behind the store's back.
    pub fn execute(&self, sql: &str) {
        match self {
            Self::Sqlite(dir) => {
                let connection = rusqlite::Connection::open(dir.0.join("data").join("tokengate.db")).unwrap();
                connection.execute_batch(sql).unwrap();
            }
            Self::Postgres(database) => database.client().batch_execute(sql).unwrap(),
        }
    }
}

/// A store as a test uses it.
pub enum OpenStore {
    Sqlite(SqliteStore),
    Postgres(Box<PostgresStore>),
}

impl OpenStore {
    pub fn store(&self) -> &dyn TokenStore {
        match self {
            Self::Sqlite(store) => store,
            Self::Postgres(store) => store.as_ref(),
        }
    }

    pub fn schema_version(&self) -> i64 {
        match self {
            Self::Sqlite(store) => store.schema_version().unwrap(),
            Self::Postgres(store) => store.schema_version().unwrap(),
        }
    }

    pub fn known_schema_version(&self) -> i64 {
        match self {
            Self::Sqlite(_) => SqliteStore::known_schema_version(),
            Self::Postgres(_) => PostgresStore::known_schema_version(),
        }
    }
}

/// The server URL from `TOKENGATE_TEST_DATABASE_URL`; without it, a failure if PostgreSQL is
/// required, else `None` and a warning that goes around the test harness's output capture.
pub fn postgres_server(test: &str) -> Option<String> {
    if let Ok(url) = std::env::var(TEST_DATABASE_URL_ENV) {
        if !url.trim().is_empty() {
            return Some(url);
        }
    }
    let how = format!(
        "run `make postgres`, then `export {TEST_DATABASE_URL_ENV}={MAKE_POSTGRES_URL}` (`make test` does both)"
    );
    if postgres_required() {
        panic!("{TEST_DATABASE_URL_ENV} is not set and PostgreSQL tests are required (CI or TOKENGATE_REQUIRE_POSTGRES=1): {how}");
    }
    // Straight to stderr: libtest captures only the print macros, and this must be seen.
    static EXPLAINED: Once = Once::new();
    EXPLAINED.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "\n!!! WARNING: {TEST_DATABASE_URL_ENV} is not set: the PostgreSQL tests below are SKIPPED.\n\
             !!! To run them: {how}.\n\
             !!! To make their absence a failure: set TOKENGATE_REQUIRE_POSTGRES=1 (CI does).\n"
        );
    });
    let _ = writeln!(std::io::stderr(), "!!! SKIPPED (no PostgreSQL): {test}");
    None
}

/// `CI` set (to anything but empty, `0` or `false`), or `TOKENGATE_REQUIRE_POSTGRES=1`.
fn postgres_required() -> bool {
    let ci = std::env::var("CI").is_ok_and(|value| !matches!(value.trim(), "" | "0" | "false"));
    ci || std::env::var("TOKENGATE_REQUIRE_POSTGRES").is_ok_and(|value| value.trim() == "1")
}

/// A database created for one test and dropped (with its connections) at the end.
pub struct TestDatabase {
    admin_url: String,
    pub name: String,
    /// The URL of this database.
    pub url: String,
}

impl TestDatabase {
    pub fn create(admin_url: &str, test: &str) -> Self {
        let label = test.rsplit("::").find(|part| *part != "postgres").unwrap_or("test");
        let label: String = label.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(24).collect();
        let unique = tokengate_cli::token_id::generate().unwrap().replace('-', "");
        let name = format!("tokengate_test_{}_{}", label.to_ascii_lowercase(), &unique[..12]);
        with_admin(admin_url, |admin| admin.batch_execute(&format!("CREATE DATABASE \"{name}\""))).unwrap_or_else(
            |error| {
                panic!("cannot create a test database through {TEST_DATABASE_URL_ENV} ({error:?}); `make postgres`?")
            },
        );
        let url = with_database(admin_url, &name);
        Self { admin_url: admin_url.to_owned(), name, url }
    }

    /// A plain connection to this database.
    pub fn client(&self) -> Client {
        Client::connect(&self.url, NoTls).unwrap()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(error) = with_admin(&self.admin_url, |admin| admin.batch_execute(&sql)) {
            let _ = writeln!(std::io::stderr(), "warning: could not drop test database {}: {error}", self.name);
        }
    }
}

/// Runs `work` on the one connection to the server URL that all tests share (connecting costs
/// a SCRAM key derivation, slow in debug builds).
fn with_admin<T>(url: &str, work: impl Fn(&mut Client) -> Result<T, postgres::Error>) -> Result<T, postgres::Error> {
    static ADMIN: Mutex<Option<Client>> = Mutex::new(None);
    let mut admin = ADMIN.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(client) = admin.as_mut().filter(|client| !client.is_closed()) {
        if let Ok(value) = work(client) {
            return Ok(value);
        }
    }
    let client = admin.insert(Client::connect(url, NoTls)?);
    work(client)
}

/// `url` with its database name replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(base, query)| (base, query));
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let path_start = base[authority_start..].find('/').map_or(base.len(), |index| authority_start + index);
    let query = if query.is_empty() { String::new() } else { format!("?{query}") };
    format!("{}/{name}{query}", &base[..path_start])
}

#[test]
fn database_urls_keep_everything_but_the_name() {
    let cases = [
        ("postgres://u:p@127.0.0.1:5432/tokengate", "postgres://u:p@127.0.0.1:5432/t1"),
        ("postgres://u:p@host/tokengate?connect_timeout=3", "postgres://u:p@host/t1?connect_timeout=3"),
        ("postgresql://u@host:5433", "postgresql://u@host:5433/t1"),
    ];
    for (url, want) in cases {
        assert_eq!(with_database(url, "t1"), want);
    }
}
