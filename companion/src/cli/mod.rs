//! The `tokengate` command line: `serve` runs the key service; `token ...` drives its admin API.

mod client;
mod confirm;
pub mod duration;
mod error;
pub mod output;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

pub use client::AdminClient;
pub use error::{CliError, EXIT_FAILURE, EXIT_UNREACHABLE, EXIT_USAGE};
pub use output::OutputFormat;

use crate::api::CreateTokenRequest;
use crate::clock::unix_now;
use crate::rfc3339;
use crate::server::{self, AdminToken, ServerConfig, StoreConfig};
use crate::service::{DEFAULT_MAX_KEYS_PER_NAMESPACE, MAX_KEYS_PER_NAMESPACE_CEILING};

/// Service URL used when neither `--url` nor `TOKENGATE_URL` is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8081";

/// tokengate key service and admin CLI.
#[derive(Debug, Parser)]
#[command(
    name = "tokengate",
    version,
    about = "tokengate key service and admin CLI: mints per-token Ed25519 JWTs and publishes \
             each namespace's keys as a JWKS for the tokengate Envoy filter",
    after_help = "The admin token is read from TOKENGATE_ADMIN_TOKEN.\n\
                  Exit codes: 0 ok, 1 API or user error, 2 usage error, 3 service unreachable."
)]
pub struct Cli {
    /// Base URL of the tokengate service (token commands)
    #[arg(
        long,
        global = true,
        env = "TOKENGATE_URL",
        default_value = DEFAULT_URL,
        help_heading = "Global options"
    )]
    pub url: String,
    /// Output format
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = OutputFormat::Table,
        help_heading = "Global options"
    )]
    pub output: OutputFormat,
    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the key service: the token admin API, the public per-namespace JWKS and the tokens
    /// console (/console)
    Serve(ServeArgs),
    /// Create, list, show and delete tokens through the service's admin API
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `tokengate serve`.
#[derive(Debug, Args)]
#[command(after_help = "Give exactly one store: --data-dir (SQLite, the default choice for a single \
                        service) or --database-url (PostgreSQL, for several replicas sharing one \
                        database). The PostgreSQL connection is not encrypted (no TLS): keep the \
                        database on localhost or a trusted network.\n\n\
                        Each replica keeps a namespace's JWKS in memory for at most 1 s: a token \
                        created or deleted through another replica shows in this one's JWKS within \
                        that second (at once for its own creates and deletes).\n\n\
                        The tokens console: open http://LISTEN/console in a browser and sign in \
                        with the admin token to list, generate and delete tokens.")]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Keep tokens in SQLite: DIR/tokengate.db (created if missing)
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep tokens in PostgreSQL instead: postgres://USER:PASS@HOST:PORT/DB, shared by every
    /// replica given the same URL. Connects without TLS (NoTls); sslmode=require is refused
    #[arg(long, value_name = "URL", env = server::config::DATABASE_URL_ENV, hide_env_values = true)]
    pub database_url: Option<String>,
    /// `iss` claim of the tokens minted
    #[arg(long, value_name = "ISS", default_value = "tokengate")]
    pub issuer: String,
    /// File holding the admin API token (default: TOKENGATE_ADMIN_TOKEN); at least 16 characters
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Most keys a namespace may publish (live tokens, and expired ones for an hour); token
    /// create answers 409 namespace_full beyond it. At most 25000, which keeps the key set
    /// within what the Envoy filter accepts (4 MiB)
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_MAX_KEYS_PER_NAMESPACE,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_KEYS_PER_NAMESPACE_CEILING))
    )]
    pub max_keys_per_namespace: u32,
}

/// `tokengate token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token for a namespace or one of its functions; the token is printed only this once
    Create(CreateArgs),
    /// List a namespace's tokens (metadata only: tokens are never shown again)
    List(ListArgs),
    /// Show one token's metadata
    Show {
        /// Token id
        id: String,
    },
    /// Delete (revoke) a token: its key leaves the namespace JWKS at once
    Delete {
        /// Token id
        id: String,
        /// Do not ask for confirmation
        #[arg(long, short)]
        yes: bool,
    },
}

/// `tokengate token create`.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("expiry")
        .required(true)
        .args(["expires_at", "expires_in", "no_expiration"])
))]
pub struct CreateArgs {
    /// Namespace the token opens
    #[arg(long, value_name = "NS")]
    pub namespace: String,
    /// Function the token opens (default: a namespace token, valid for every function)
    #[arg(long, value_name = "FN")]
    pub function: Option<String>,
    /// What the token is for (1 to 256 characters)
    #[arg(long, value_name = "TEXT")]
    pub description: String,
    /// Expiry as an RFC 3339 timestamp, e.g. 2030-01-01T00:00:00Z
    #[arg(long, value_name = "RFC3339")]
    pub expires_at: Option<String>,
    /// Expiry from now: 30s, 15m, 12h, 30d
    #[arg(long, value_name = "DURATION", value_parser = duration::parse_duration)]
    pub expires_in: Option<u64>,
    /// The token never expires (it can still be deleted)
    #[arg(long)]
    pub no_expiration: bool,
}

/// `tokengate token list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Namespace whose tokens to list
    #[arg(long, value_name = "NS")]
    pub namespace: String,
    /// Only this function's tokens
    #[arg(long, value_name = "FN")]
    pub function: Option<String>,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Token(command) => {
            let client = AdminClient::new(&cli.url, &admin_token_from_env()?)?;
            let mut out = std::io::stdout().lock();
            token(&client, cli.output, command, &mut out)?;
            out.flush()?;
            Ok(())
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), CliError> {
    let env_token = std::env::var(server::config::ADMIN_TOKEN_ENV).ok();
    let admin_token = AdminToken::load(args.admin_token_file.as_deref(), env_token)?;
    server::config::check_issuer(&args.issuer)?;
    let store = StoreConfig::choose(args.data_dir, args.database_url.as_deref())?;
    server::serve(ServerConfig {
        listen: args.listen,
        store,
        issuer: args.issuer,
        admin_token,
        max_keys_per_namespace: args.max_keys_per_namespace,
    })?;
    Ok(())
}

fn admin_token_from_env() -> Result<String, CliError> {
    let token = std::env::var(server::config::ADMIN_TOKEN_ENV).map_err(|_| CliError::MissingAdminToken)?;
    let token = token.trim();
    if token.is_empty() {
        return Err(CliError::MissingAdminToken);
    }
    if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(CliError::InvalidArgument(
            "TOKENGATE_ADMIN_TOKEN may only hold visible ASCII characters".to_owned(),
        ));
    }
    Ok(token.to_owned())
}

fn token(
    client: &AdminClient,
    format: OutputFormat,
    command: TokenCommand,
    out: &mut impl Write,
) -> Result<(), CliError> {
    match command {
        TokenCommand::Create(args) => {
            let request = CreateTokenRequest {
                namespace_id: args.namespace,
                function_id: args.function,
                description: args.description,
                expires_at: expiry(args.expires_at, args.expires_in, unix_now())?,
            };
            output::created(out, format, &client.create(&request)?)?;
        }
        TokenCommand::List(args) => {
            output::list(out, format, &client.list(&args.namespace, args.function.as_deref())?)?;
        }
        TokenCommand::Show { id } => output::metadata(out, format, &client.show(&id)?)?,
        TokenCommand::Delete { id, yes } => {
            if !yes {
                let stdin = std::io::stdin();
                if !stdin.is_terminal() {
                    return Err(CliError::Aborted {
                        id,
                        hint: " (stdin is not a terminal; pass --yes to delete without asking)",
                    });
                }
                if !confirm::confirm_delete(&id, &mut std::io::stderr(), &mut stdin.lock())? {
                    return Err(CliError::Aborted { id, hint: "" });
                }
            }
            client.delete(&id)?;
            output::deleted(out, format, &id)?;
        }
    }
    Ok(())
}

/// The `expires_at` to send: the given timestamp as is (the service validates it), `now` plus
/// `--expires-in`, or none.
fn expiry(expires_at: Option<String>, expires_in: Option<u64>, now: i64) -> Result<Option<String>, CliError> {
    if let Some(text) = expires_at {
        return Ok(Some(text));
    }
    let Some(seconds) = expires_in else {
        return Ok(None);
    };
    let expires_at = i64::try_from(seconds)
        .ok()
        .and_then(|seconds| now.checked_add(seconds))
        .filter(|expires_at| *expires_at < rfc3339::YEAR_9999_UNIX)
        .ok_or_else(|| {
            CliError::InvalidArgument("--expires-in is too long: the expiry must fall before the year 9999".to_owned())
        })?;
    Ok(Some(rfc3339::format(expires_at)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn create_needs_exactly_one_expiry() {
        let base = ["tokengate", "token", "create", "--namespace", "shop", "--description", "d"];
        let parse = |extra: &[&str]| Cli::try_parse_from(base.iter().chain(extra));
        assert!(parse(&[]).is_err());
        assert!(parse(&["--no-expiration"]).is_ok());
        assert!(parse(&["--expires-in", "30d"]).is_ok());
        assert!(parse(&["--expires-in", "30x"]).is_err());
        assert!(parse(&["--expires-at", "2030-01-01T00:00:00Z"]).is_ok());
        assert!(parse(&["--expires-in", "1h", "--no-expiration"]).is_err());
        assert!(parse(&["--expires-in", "1h", "--expires-at", "2030-01-01T00:00:00Z"]).is_err());
    }

    #[test]
    fn expiry_from_flags() {
        let now = 1_796_317_200;
        assert_eq!(expiry(None, None, now).unwrap(), None);
        assert_eq!(expiry(None, Some(3600), now).unwrap().as_deref(), Some("2026-12-03T18:00:00Z"));
        assert_eq!(expiry(Some("x".to_owned()), None, now).unwrap().as_deref(), Some("x"));
        assert!(expiry(None, Some(u64::MAX), now).is_err());
        assert!(expiry(None, Some(300_000_000_000), now).is_err());
    }
}
