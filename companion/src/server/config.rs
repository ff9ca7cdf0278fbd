//! Server settings checked before anything starts: above all the admin token, and which store
//! holds the tokens.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::store::{DatabaseUrl, InvalidDatabaseUrl};

/// Shortest admin token accepted.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Environment variable holding the admin token (server and CLI alike).
pub const ADMIN_TOKEN_ENV: &str = "TOKENGATE_ADMIN_TOKEN";

/// Everything `tokengate serve` needs, validated.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where tokens are kept.
    pub store: StoreConfig,
    /// `iss` of minted tokens.
    pub issuer: String,
    /// Bearer token of the admin API.
    pub admin_token: AdminToken,
    /// Most keys a namespace may publish (live tokens and those in their grace hour).
    pub max_keys_per_namespace: u32,
}

/// Where `tokengate serve` keeps tokens.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// SQLite: `tokengate.db` in this directory (the default store).
    Sqlite {
        /// Directory holding `tokengate.db`.
        data_dir: PathBuf,
    },
    /// PostgreSQL, shared by every replica given the same URL.
    Postgres(Box<DatabaseUrl>),
}

impl StoreConfig {
    /// Exactly one of `--data-dir` and `--database-url` (or its environment variable).
    pub fn choose(data_dir: Option<PathBuf>, database_url: Option<&str>) -> Result<Self, ConfigError> {
        match (data_dir, database_url) {
            (Some(data_dir), None) => Ok(Self::Sqlite { data_dir }),
            (None, Some(url)) => Ok(Self::Postgres(Box::new(DatabaseUrl::parse(url)?))),
            (None, None) => Err(ConfigError::NoStore),
            (Some(_), Some(_)) => Err(ConfigError::TwoStores),
        }
    }
}

impl std::fmt::Display for StoreConfig {
    /// What the startup line says about the store (never a password).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite { data_dir } => write!(f, "SQLite in {}", data_dir.display()),
            Self::Postgres(url) => write!(f, "PostgreSQL {url}"),
        }
    }
}

/// Why the server refuses to start; the operator's fault, answered with exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither the environment variable nor a file gave an admin token.
    #[error("no admin token: set {ADMIN_TOKEN_ENV} or pass --admin-token-file")]
    MissingAdminToken,
    /// The admin token file could not be read.
    #[error("cannot read admin token file {path}: {source}")]
    AdminTokenFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The admin token is too short to resist guessing.
    #[error("admin token too short: at least {MIN_ADMIN_TOKEN_LEN} characters are required")]
    ShortAdminToken,
    /// The issuer is empty or has control characters.
    #[error("--issuer must be non-empty printable text")]
    BadIssuer,
    /// No store was chosen.
    #[error("no token store: pass --data-dir DIR (SQLite) or --database-url postgres://USER:PASS@HOST:PORT/DB")]
    NoStore,
    /// Both stores were chosen.
    #[error(
        "two token stores: pass either --data-dir or --database-url, not both \
         (is {DATABASE_URL_ENV} set in the environment?)"
    )]
    TwoStores,
    /// The PostgreSQL URL is unusable.
    #[error("invalid --database-url: {0}")]
    DatabaseUrl(#[from] InvalidDatabaseUrl),
}

/// Environment variable that can hold `--database-url` (keeps the password out of `ps`).
pub const DATABASE_URL_ENV: &str = "TOKENGATE_DATABASE_URL";

/// The admin API's bearer token. Never printed: its `Debug` is redacted.
#[derive(Clone)]
pub struct AdminToken(String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// Accepts a token of at least [`MIN_ADMIN_TOKEN_LEN`] characters (after trimming).
    pub fn new(text: &str) -> Result<Self, ConfigError> {
        let text = text.trim();
        if text.chars().count() < MIN_ADMIN_TOKEN_LEN {
            return Err(ConfigError::ShortAdminToken);
        }
        Ok(Self(text.to_owned()))
    }

    /// Loads the token from `file` when given, else from the environment value `env`.
    pub fn load(file: Option<&Path>, env: Option<String>) -> Result<Self, ConfigError> {
        match (file, env) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::AdminTokenFile { path: path.to_path_buf(), source })?;
                Self::new(&text)
            }
            (None, Some(text)) => Self::new(&text),
            (None, None) => Err(ConfigError::MissingAdminToken),
        }
    }

    /// The token's text, for comparisons only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

/// Checks an issuer given on the command line.
pub fn check_issuer(issuer: &str) -> Result<(), ConfigError> {
    if issuer.is_empty() || issuer.chars().any(char::is_control) {
        return Err(ConfigError::BadIssuer);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_token_sources_and_length() {
        assert!(matches!(AdminToken::load(None, None), Err(ConfigError::MissingAdminToken)));
        assert!(matches!(AdminToken::load(None, Some("short".to_owned())), Err(ConfigError::ShortAdminToken)));
        assert!(matches!(
            AdminToken::load(None, Some("  fifteen-chars  \n".to_owned())),
            Err(ConfigError::ShortAdminToken)
        ));
        let token = AdminToken::load(None, Some("sixteen-chars-ok\n".to_owned())).unwrap();
        assert_eq!(token.expose(), "sixteen-chars-ok");
        assert!(!format!("{token:?}").contains("sixteen"));

        let path = std::env::temp_dir().join(format!("tokengate-admin-{}", crate::token_id::generate().unwrap()));
        assert!(matches!(
            AdminToken::load(Some(&path), Some("sixteen-chars-ok".to_owned())),
            Err(ConfigError::AdminTokenFile { .. })
        ));
        std::fs::write(&path, "from-the-file-0123456789\n").unwrap();
        let token = AdminToken::load(Some(&path), Some("sixteen-chars-ok".to_owned())).unwrap();
        assert_eq!(token.expose(), "from-the-file-0123456789");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn exactly_one_store() {
        let dir = || Some(PathBuf::from("/var/lib/tokengate"));
        assert!(matches!(StoreConfig::choose(dir(), None), Ok(StoreConfig::Sqlite { .. })));
        let url = "postgres://tokengate:secret@127.0.0.1:5432/tokengate";
        let postgres = StoreConfig::choose(None, Some(url)).unwrap();
        assert_eq!(postgres.to_string(), "PostgreSQL postgres://tokengate@127.0.0.1:5432/tokengate");
        assert!(!format!("{postgres:?}").contains("secret"));
        assert!(matches!(StoreConfig::choose(None, None), Err(ConfigError::NoStore)));
        assert!(matches!(StoreConfig::choose(dir(), Some(url)), Err(ConfigError::TwoStores)));
        assert!(matches!(StoreConfig::choose(None, Some("/tmp/db")), Err(ConfigError::DatabaseUrl(_))));
    }

    #[test]
    fn issuers() {
        assert!(check_issuer("tokengate").is_ok());
        assert!(check_issuer("https://issuer.example").is_ok());
        assert!(check_issuer("").is_err());
        assert!(check_issuer("a\nb").is_err());
    }
}
