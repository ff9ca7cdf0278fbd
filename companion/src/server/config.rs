//! Server settings checked before anything starts: above all the admin token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Shortest admin token accepted.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Environment variable holding the admin token (server and CLI alike).
pub const ADMIN_TOKEN_ENV: &str = "TOKENGATE_ADMIN_TOKEN";

/// Everything `tokengate serve` needs, validated.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory holding `tokengate.db`.
    pub data_dir: PathBuf,
    /// `iss` of minted tokens.
    pub issuer: String,
    /// Bearer token of the admin API.
    pub admin_token: AdminToken,
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
}

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
    fn issuers() {
        assert!(check_issuer("tokengate").is_ok());
        assert!(check_issuer("https://issuer.example").is_ok());
        assert!(check_issuer("").is_err());
        assert!(check_issuer("a\nb").is_err());
    }
}
