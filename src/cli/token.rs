//! `swarm token mint --role R [--ttl S] [--max-uses N] [--agent NAME]` and `swarm token revoke
//! FINGERPRINT`: tokens for the API of a `swarm serve` on the same journal, signed with the
//! secret it runs with (`SWARM_TOKEN_SECRET`). The token goes to stdout and nowhere else; the
//! journal keeps only its digest and fingerprint, which `revoke` names it by.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::EXIT_USAGE;
use crate::gate::registry::{Grant, TokenRegistry};
use crate::gate::token::SECRET_ENV;
use crate::gate::{Gate, Role, SigningKey};
use crate::store::journal::{SqliteJournal, tokens};

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Mint a token for the API of a `swarm serve` that signs with the same secret
    /// (SWARM_TOKEN_SECRET) and journals to the same file; the token is printed on stdout.
    #[command(after_help = super::examples::TOKEN_MINT)]
    Mint {
        /// The role: operator, worker, observer or senior.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Seconds until it expires (default: never).
        #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..=315_360_000))]
        ttl: Option<u64>,
        /// How many requests it may make (default: no limit).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        max_uses: Option<u64>,
        /// Who holds it, as the token names its holder (default: the role's name).
        #[arg(long, value_name = "NAME")]
        agent: Option<String>,
    },
    /// Revoke a minted token by the fingerprint `mint` printed: the serve refuses it from its
    /// next request on.
    #[command(after_help = super::examples::TOKEN_REVOKE)]
    Revoke {
        /// The 12 hex characters `swarm token mint` printed on stderr.
        fingerprint: String,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::ALL
        .iter()
        .copied()
        .find(|r| r.name() == text)
        .ok_or_else(|| format!("`{text}` is no role (operator, worker, observer, senior)"))
}

pub fn run(state: Option<&str>, command: TokenCommand) -> u8 {
    let path = match state {
        Some("memory") => {
            eprintln!(
                "swarm token: --state memory keeps no tokens; a minted token is recorded in the journal it is for"
            );
            return EXIT_USAGE;
        }
        Some(path) => PathBuf::from(path),
        None => super::default_journal(Path::new("")),
    };
    match command {
        TokenCommand::Mint { role, ttl, max_uses, agent } => {
            mint(&path, role, ttl, max_uses, agent, std::env::var_os(SECRET_ENV))
        }
        TokenCommand::Revoke { fingerprint } => revoke(&path, &fingerprint),
    }
}

fn mint(
    path: &Path,
    role: Role,
    ttl: Option<u64>,
    max_uses: Option<u64>,
    agent: Option<String>,
    secret: Option<OsString>,
) -> u8 {
    let Some(secret) = secret else {
        eprintln!(
            "swarm token mint: {SECRET_ENV} is not set. A token is good only with the secret of the serve that \
             takes it: start `swarm serve` and this command with the same {SECRET_ENV} (a serve without one \
             signs with a random secret, and only its .swarm/operator.token gets in)"
        );
        return EXIT_USAGE;
    };
    let key = match secret
        .into_string()
        .map_err(|_| format!("{SECRET_ENV} is not UTF-8"))
        .and_then(|s| SigningKey::new(s.as_bytes()).map_err(|_| format!("{SECRET_ENV} is empty")))
    {
        Ok(key) => key,
        Err(message) => {
            eprintln!("swarm token mint: {message}");
            return EXIT_USAGE;
        }
    };
    // Opening the journal as a host would creates and migrates it, so a token can be minted
    // before the serve first starts.
    if let Err(e) = SqliteJournal::open(path) {
        eprintln!("swarm token mint: cannot open the journal {e}");
        return EXIT_USAGE;
    }
    let mut grant = Grant::new(role, agent.unwrap_or_else(|| role.name().to_string()));
    if let Some(ttl) = ttl {
        grant = grant.with_ttl_ms(ttl.saturating_mul(1000));
    }
    if let Some(max) = max_uses {
        grant = grant.with_max_uses(max);
    }
    let token = TokenRegistry::new(key, Gate::default()).mint(grant, crate::engine::now_ms());
    if let Err(e) = tokens::issue(path, &token) {
        eprintln!("swarm token mint: {e}");
        return EXIT_USAGE;
    }
    let expiry = ttl.map_or("never expires".to_string(), |s| format!("expires in {s} s"));
    let uses = max_uses.map_or(String::new(), |n| format!(", {n} uses"));
    eprintln!("minted {} token {} ({expiry}{uses}) for {}", role.name(), token.fingerprint(), path.display());
    println!("{}", token.encode());
    0
}

fn revoke(path: &Path, fingerprint: &str) -> u8 {
    if !path.exists() {
        eprintln!("swarm token revoke: no journal at {}", path.display());
        return EXIT_USAGE;
    }
    match tokens::revoke(path, fingerprint) {
        Ok(0) => {
            eprintln!("swarm token revoke: no token minted for {} has fingerprint {fingerprint}", path.display());
            EXIT_USAGE
        }
        Ok(n) => {
            eprintln!("revoked {n} token{} with fingerprint {fingerprint}", if n == 1 { "" } else { "s" });
            0
        }
        Err(e) => {
            eprintln!("swarm token revoke: {e}");
            EXIT_USAGE
        }
    }
}
