//! Tokens minted by another process for the hosts on a journal (`swarm token mint`): a row per
//! token, under the digest of its nonce and never the token itself, so a host that finds a
//! token it did not mint here can tell it was issued (and whether it was revoked since), and take
//! it in. Only a host signing with the same secret can: the signature is checked when it does.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::JournalError;
use super::open::open_retrying;
use crate::gate::registry::ledger_key;
use crate::gate::token::CapToken;

/// Records `token` as issued.
pub fn issue(path: &Path, token: &CapToken) -> Result<(), JournalError> {
    let conn = open_retrying(path)?;
    let expire = (token.expire_at != u64::MAX).then_some(token.expire_at as i64);
    conn.execute(
        "INSERT INTO tokens (key, fingerprint, role, agent, issued_ms, expire_ms, max_uses) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            ledger_key(token),
            token.fingerprint(),
            token.role.name(),
            token.agent_id,
            token.issued_at as i64,
            expire,
            token.max_uses.map(|n| n as i64),
        ],
    )
    .map_err(|e| JournalError::new(path, e))?;
    Ok(())
}

/// Marks revoked the issued tokens named by `fingerprint` (as `swarm token mint` printed it);
/// returns how many there were.
pub fn revoke(path: &Path, fingerprint: &str) -> Result<usize, JournalError> {
    let conn = open_retrying(path)?;
    conn.execute("UPDATE tokens SET revoked = 1 WHERE fingerprint = ?1", [fingerprint])
        .map_err(|e| JournalError::new(path, e))
}

/// A host's read-only view of the issued tokens.
pub struct Ledger {
    conn: Connection,
    path: String,
}

impl Ledger {
    /// Opens the ledger of the journal at `path` (which the host has open, so it exists and is
    /// migrated).
    pub fn open(path: &Path) -> Result<Ledger, JournalError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| JournalError::new(path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| JournalError::new(path, e))?;
        Ok(Ledger { conn, path: path.display().to_string() })
    }

    /// Whether `token` was issued here: `None` if not, else whether it has been revoked.
    pub fn revoked(&self, token: &CapToken) -> Result<Option<bool>, JournalError> {
        let err = |e: rusqlite::Error| JournalError { path: self.path.clone(), message: e.to_string(), locked: false };
        let mut stmt = self.conn.prepare_cached("SELECT revoked FROM tokens WHERE key = ?1").map_err(err)?;
        stmt.query_row([ledger_key(token)], |r| r.get::<_, i64>(0)).optional().map(|r| r.map(|v| v != 0)).map_err(err)
    }
}

impl crate::gate::registry::TokenLedger for Ledger {
    fn lookup(&self, token: &CapToken) -> Option<bool> {
        self.revoked(token).unwrap_or_else(|e| {
            tracing::warn!("the token ledger cannot be read: {e}");
            None
        })
    }
}
