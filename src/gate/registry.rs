//! The server side of tokens: minting, the per-token records (uses, revocation, task binding,
//! spawn depth) and the full verification.
//!
//! The registry is single-threaded (`&mut self`, no locks): it belongs to the engine, which
//! owns it on one thread.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha256};

pub use super::error::TokenError;
use super::token::{hex_into, hex_str};
use super::{CapToken, Gate, Role, SigningKey, Verb};

/// What a new token grants. Build one with [`Grant::new`] and the `with_*` methods, or literally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Which verbs the token may call, by the gate's table.
    pub role: Role,
    /// The agent (or operator, observer, senior) the token speaks for.
    pub agent_id: String,
    /// Free-form scope names, carried in the token (`"*"` by convention).
    pub scopes: Vec<String>,
    /// Lifetime in milliseconds from minting; `None` never expires (`expire_at = u64::MAX`).
    /// `Some(0)` makes a token that is already expired.
    pub ttl_ms: Option<u64>,
    /// `None` is unlimited.
    pub max_uses: Option<u64>,
    /// The task the token is bound to (worker tokens): verifying it for another task fails.
    pub task: Option<String>,
    /// The spawn depth of that task (0 for a top-level task).
    pub depth: u32,
}

impl Grant {
    /// A grant with no scopes, no expiry, unlimited uses, no task binding, depth 0.
    pub fn new(role: Role, agent_id: impl Into<String>) -> Grant {
        Grant {
            role,
            agent_id: agent_id.into(),
            scopes: Vec::new(),
            ttl_ms: None,
            max_uses: None,
            task: None,
            depth: 0,
        }
    }

    /// Sets the scopes.
    pub fn with_scopes(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Grant {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Expires the token `ttl_ms` milliseconds after minting.
    pub fn with_ttl_ms(mut self, ttl_ms: u64) -> Grant {
        self.ttl_ms = Some(ttl_ms);
        self
    }

    /// Limits the token to `max_uses` successful verifications (1 = one-time).
    pub fn with_max_uses(mut self, max_uses: u64) -> Grant {
        self.max_uses = Some(max_uses);
        self
    }

    /// Binds the token to `task`, whose spawn depth is `depth`.
    pub fn for_task(mut self, task: impl Into<String>, depth: u32) -> Grant {
        self.task = Some(task.into());
        self.depth = depth;
        self
    }
}

/// What the caller of a verb knows about the call, for the checks after the record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifyContext<'a> {
    /// The task the verb acts on. A token bound to a task may act only on that one; `None`
    /// skips the check (verbs such as `start_task` act on no existing task).
    pub task: Option<&'a str>,
    /// The engine's spawn-depth limit, when the verb starts a sub-task; `None` skips the check.
    pub max_depth: Option<u32>,
}

/// A token that passed verification: who is calling, and the record's binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The token's `agent_id`, `role` and `scopes`, now trusted.
    pub agent_id: String,
    /// The token's role.
    pub role: Role,
    /// The token's scope names.
    pub scopes: Vec<String>,
    /// The task the token is bound to, if any.
    pub task: Option<String>,
    /// The spawn depth of that task.
    pub depth: u32,
    /// The token's fingerprint, for logs.
    pub fingerprint: String,
}

/// A token minted by a registry and kept in memory by the engine (a run's operator token, an
/// attempt's worker token), with the key of its record. Checking it needs no hashing; see
/// [`TokenRegistry::verify_held`]. Only [`TokenRegistry::mint_held`] makes one, so a held
/// token is always one this process signed.
#[derive(Clone)]
pub struct HeldToken {
    token: CapToken,
    key: RecordKey,
}

impl HeldToken {
    /// The token itself.
    pub fn token(&self) -> &CapToken {
        &self.token
    }

    /// The transport form, for handing the token to a worker.
    pub fn encode(&self) -> String {
        self.token.encode()
    }
}

impl fmt::Debug for HeldToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldToken").field("token", &self.token).finish_non_exhaustive()
    }
}

/// Who a held token speaks for, once it passed: what the engine needs to scope the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's role.
    pub role: Role,
    /// The task the token is bound to, if any.
    pub task: Option<Arc<str>>,
    /// The spawn depth of that task.
    pub depth: u32,
}

impl From<Verified> for Caller {
    fn from(v: Verified) -> Caller {
        Caller { role: v.role, task: v.task.map(Arc::from), depth: v.depth }
    }
}

/// The server-side state of one minted token. Counters live here, not in the token, so a token
/// never changes after it is signed and a copy cannot reset its own use count.
#[derive(Clone, Debug)]
struct Record {
    uses: u64,
    max_uses: Option<u64>,
    revoked: bool,
    task: Option<Arc<str>>,
    depth: u32,
    /// Kept so `purge_expired` can drop the record without the token.
    expire_at: u64,
    /// Taken in from the [`TokenLedger`] rather than minted here: the ledger is asked again
    /// at each use, so a revocation recorded there holds from the next use on.
    adopted: bool,
}

/// Where tokens minted by another process with the same key are recorded (the journal's
/// `tokens` table, which `swarm token mint` writes): a token the registry does not know is
/// looked up here before it is refused as unknown.
pub trait TokenLedger {
    /// `None` if `token` was not issued there; else whether it has been revoked. A ledger that
    /// cannot be read answers `None` (the token is then unknown) and says why in the log.
    fn lookup(&self, token: &CapToken) -> Option<bool>;
}

/// The SHA-256 of a nonce: the record key. The raw nonce is never a key, so a dump or a debug
/// print of the map holds nothing that, with a signature, would make a token.
type RecordKey = [u8; 32];

fn record_key(nonce: &str) -> RecordKey {
    Sha256::digest(nonce.as_bytes()).into()
}

/// The name a ledger outside the registry (the journal's `tokens` table) keeps `token` under:
/// its record key in hex. Like the key, it holds nothing that would let someone present it.
pub fn ledger_key(token: &CapToken) -> String {
    let mut hex = [0u8; 64];
    hex_into(&record_key(&token.nonce), &mut hex);
    hex_str(&hex).to_owned()
}

/// Mints tokens and verifies them against the gate and their records.
pub struct TokenRegistry {
    key: SigningKey,
    gate: Gate,
    records: HashMap<RecordKey, Record>,
    ledger: Option<Box<dyn TokenLedger>>,
}

impl TokenRegistry {
    /// A registry with no records, signing with `key` and checking verbs against `gate`.
    pub fn new(key: SigningKey, gate: Gate) -> TokenRegistry {
        TokenRegistry { key, gate, records: HashMap::new(), ledger: None }
    }

    /// Takes tokens minted elsewhere with this key from `ledger` (see [`TokenLedger`]).
    pub fn set_ledger(&mut self, ledger: Option<Box<dyn TokenLedger>>) {
        self.ledger = ledger;
    }

    /// The role × verb table in force.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Replaces or edits the role × verb table; it applies to every later verification,
    /// including of tokens already minted.
    pub fn gate_mut(&mut self) -> &mut Gate {
        &mut self.gate
    }

    /// Makes, signs and records a token for `grant`, issued at `now_ms`.
    ///
    /// On the per-attempt hot path, so it draws no randomness: the nonce is the process's random
    /// salt plus a process-wide counter (see `next_nonce`).
    pub fn mint(&mut self, grant: Grant, now_ms: u64) -> CapToken {
        self.mint_held(grant, now_ms).token
    }

    /// [`TokenRegistry::mint`] for a token the engine keeps in memory: see [`HeldToken`].
    pub fn mint_held(&mut self, grant: Grant, now_ms: u64) -> HeldToken {
        let Grant { role, agent_id, scopes, ttl_ms, max_uses, task, depth } = grant;
        let expire_at = ttl_ms.map_or(u64::MAX, |ttl| now_ms.saturating_add(ttl));
        let mut token = CapToken {
            agent_id,
            role,
            scopes,
            issued_at: now_ms,
            expire_at,
            max_uses,
            nonce: next_nonce(),
            sig: String::with_capacity(64),
        };
        token.sign(&self.key);
        let record =
            Record { uses: 0, max_uses, revoked: false, task: task.map(Arc::from), depth, expire_at, adopted: false };
        let key = record_key(&token.nonce);
        self.records.insert(key, record);
        HeldToken { token, key }
    }

    /// Decodes `token` (the transport form) and verifies it; see [`TokenRegistry::verify_token`].
    pub fn verify(
        &mut self,
        token: &str,
        verb: Verb,
        ctx: VerifyContext<'_>,
        now_ms: u64,
    ) -> Result<Verified, TokenError> {
        let token = CapToken::decode(token)?;
        self.verify_token(&token, verb, ctx, now_ms)
    }

    /// Verifies an already decoded token for `verb`. The checks run in a fixed order, so the
    /// error names the first one that fails: signature, expiry, role × verb, the record
    /// (unknown, revoked, uses exhausted), task binding, spawn depth. Only a verification that
    /// passes every check counts as a use.
    pub fn verify_token(
        &mut self,
        token: &CapToken,
        verb: Verb,
        ctx: VerifyContext<'_>,
        now_ms: u64,
    ) -> Result<Verified, TokenError> {
        if !token.signature_valid(&self.key) {
            return Err(TokenError::BadSignature);
        }
        let record = self.check_claims(token, &record_key(&token.nonce), verb, ctx, now_ms)?;
        Ok(Verified {
            agent_id: token.agent_id.clone(),
            role: token.role,
            scopes: token.scopes.clone(),
            task: record.task.as_deref().map(str::to_string),
            depth: record.depth,
            fingerprint: token.fingerprint(),
        })
    }

    /// Verifies a token this registry minted and the engine never let out of memory. The
    /// signature is not recomputed (those bytes were signed here and cannot have changed), and
    /// the record key is the one kept at mint, so this hashes nothing; every other check runs
    /// in the same order as for a presented token, and a pass counts as a use.
    pub fn verify_held(
        &mut self,
        held: &HeldToken,
        verb: Verb,
        ctx: VerifyContext<'_>,
        now_ms: u64,
    ) -> Result<Caller, TokenError> {
        let record = self.check_claims(&held.token, &held.key, verb, ctx, now_ms)?;
        Ok(Caller { role: held.token.role, task: record.task.clone(), depth: record.depth })
    }

    /// Every check after the signature: expiry, role × verb, the record, binding, depth.
    fn check_claims(
        &mut self,
        token: &CapToken,
        key: &RecordKey,
        verb: Verb,
        ctx: VerifyContext<'_>,
        now_ms: u64,
    ) -> Result<&Record, TokenError> {
        if now_ms >= token.expire_at {
            return Err(TokenError::Expired);
        }
        if !self.gate.allows(token.role, verb) {
            return Err(TokenError::RoleViolation { role: token.role, verb });
        }
        let record = Self::record_of(&mut self.records, self.ledger.as_deref(), token, key)?;
        if record.revoked {
            return Err(TokenError::Revoked);
        }
        if record.max_uses.is_some_and(|max| record.uses >= max) {
            return Err(TokenError::UsesExhausted);
        }
        if let (Some(bound), Some(asked)) = (&record.task, ctx.task)
            && &**bound != asked
        {
            return Err(TokenError::TaskMismatch);
        }
        if let Some(max) = ctx.max_depth {
            let child = record.depth.saturating_add(1);
            if child >= max {
                return Err(TokenError::DepthExceeded { depth: child, max });
            }
        }
        record.uses += 1;
        Ok(record)
    }

    /// The record of `token`, in one lookup. Without one, a token minted elsewhere that the
    /// ledger has issued is taken in (its use count starts at nought in this process); one taken
    /// in is marked revoked once the ledger says so. Only reached with a good signature, so a
    /// token made with another key is still `bad_signature`.
    fn record_of<'r>(
        records: &'r mut HashMap<RecordKey, Record>,
        ledger: Option<&dyn TokenLedger>,
        token: &CapToken,
        key: &RecordKey,
    ) -> Result<&'r mut Record, TokenError> {
        match records.entry(*key) {
            Entry::Occupied(entry) => {
                let record = entry.into_mut();
                if record.adopted
                    && !record.revoked
                    && let Some(ledger) = ledger
                {
                    record.revoked = ledger.lookup(token) == Some(true);
                }
                Ok(record)
            }
            Entry::Vacant(slot) => {
                let revoked = ledger.and_then(|l| l.lookup(token)).ok_or(TokenError::UnknownToken)?;
                Ok(slot.insert(Record {
                    uses: 0,
                    max_uses: token.max_uses,
                    revoked,
                    task: None,
                    depth: 0,
                    expire_at: token.expire_at,
                    adopted: true,
                }))
            }
        }
    }

    /// Drops a held token's record (see [`TokenRegistry::forget`]).
    pub fn forget_held(&mut self, held: &HeldToken) -> bool {
        self.records.remove(&held.key).is_some()
    }

    /// Revokes a token given in transport form. The record stays, marked revoked, until it
    /// expires and is purged (or is forgotten), so the token keeps failing as `revoked` rather
    /// than `unknown_token`. Only a token this registry signed can be revoked: without the
    /// signature check anyone who guessed a nonce could revoke someone else's token.
    pub fn revoke(&mut self, token: &str) -> Result<(), TokenError> {
        self.revoke_token(&CapToken::decode(token)?)
    }

    /// [`TokenRegistry::revoke`] for an already decoded token.
    pub fn revoke_token(&mut self, token: &CapToken) -> Result<(), TokenError> {
        if !token.signature_valid(&self.key) {
            return Err(TokenError::BadSignature);
        }
        let record = self.records.get_mut(&record_key(&token.nonce)).ok_or(TokenError::UnknownToken)?;
        record.revoked = true;
        Ok(())
    }

    /// Drops a token's record; it verifies as `unknown_token` from then on. The engine calls this
    /// when an attempt ends, so records do not pile up. It takes the engine's own decoded token
    /// and checks no signature: it trusts its caller. Returns whether there was a record.
    pub fn forget(&mut self, token: &CapToken) -> bool {
        self.records.remove(&record_key(&token.nonce)).is_some()
    }

    /// Drops the records of tokens expired at `now_ms`; returns how many.
    pub fn purge_expired(&mut self, now_ms: u64) -> usize {
        let before = self.records.len();
        self.records.retain(|_, record| now_ms < record.expire_at);
        before - self.records.len()
    }

    /// How many records the registry holds (live, revoked or used up, not yet purged).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the registry holds no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Shows the gate and the record count; keys and records are of no use in a debug print.
impl fmt::Debug for TokenRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRegistry").field("gate", &self.gate).field("records", &self.records.len()).finish()
    }
}

/// A fresh nonce: 32 lowercase hex characters, a per-process random salt then a counter.
///
/// Unforgeability comes from the signature, so the nonce needs only to be unique: the counter
/// makes it unique within the process (across registries too, which may share a key), and the
/// salt across processes that share a secret through `SWARM_TOKEN_SECRET`. One RNG read per
/// process instead of one per mint keeps minting free of syscalls.
fn next_nonce() -> String {
    static SALT: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let salt = *SALT.get_or_init(|| getrandom::u64().unwrap_or_else(|_| fallback_salt()));
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&salt.to_be_bytes());
    raw[8..].copy_from_slice(&count.to_be_bytes());
    let mut hex = [0u8; 32];
    hex_into(&raw, &mut hex);
    hex_str(&hex).to_owned()
}

/// A salt for the (practically impossible) case that the OS RNG fails: the salt only separates
/// processes, and the clock and pid do that well enough; refusing to mint would stop the engine.
fn fallback_salt() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> TokenRegistry {
        TokenRegistry::new(SigningKey::new(b"unit-test-secret").unwrap(), Gate::default())
    }

    /// A ledger in memory: ledger key → revoked.
    struct Book(std::rc::Rc<std::cell::RefCell<HashMap<String, bool>>>);

    impl TokenLedger for Book {
        fn lookup(&self, token: &CapToken) -> Option<bool> {
            self.0.borrow().get(&ledger_key(token)).copied()
        }
    }

    #[test]
    fn tokens_minted_elsewhere_are_taken_from_the_ledger_and_its_revocations_hold() {
        let ctx = VerifyContext { task: None, max_depth: None };
        let mut minter = registry();
        let mut grant = Grant::new(Role::Operator, "ci");
        grant.max_uses = Some(2);
        let token = minter.mint(grant, 1_000);
        let text = token.encode();
        let mut host = registry();
        assert_eq!(host.verify(&text, Verb::ReadTaskState, ctx, 1_000).err(), Some(TokenError::UnknownToken));
        let book = std::rc::Rc::new(std::cell::RefCell::new(HashMap::new()));
        host.set_ledger(Some(Box::new(Book(book.clone()))));
        assert_eq!(host.verify(&text, Verb::ReadTaskState, ctx, 1_000).err(), Some(TokenError::UnknownToken));
        book.borrow_mut().insert(ledger_key(&token), false);
        assert!(host.verify(&text, Verb::ReadTaskState, ctx, 1_000).is_ok(), "issued: taken in");
        // Its limits are the token's; its use count is this process's.
        assert!(host.verify(&text, Verb::ReadTaskState, ctx, 1_000).is_ok());
        assert_eq!(host.verify(&text, Verb::ReadTaskState, ctx, 1_000).err(), Some(TokenError::UsesExhausted));
        // Revoked in the ledger: refused from the next use on.
        let other = minter.mint(Grant::new(Role::Operator, "ci"), 1_000);
        book.borrow_mut().insert(ledger_key(&other), false);
        assert!(host.verify(&other.encode(), Verb::ReadTaskState, ctx, 1_000).is_ok());
        book.borrow_mut().insert(ledger_key(&other), true);
        assert_eq!(host.verify(&other.encode(), Verb::ReadTaskState, ctx, 1_000).err(), Some(TokenError::Revoked));
        // Listed, but signed with another key: still forged.
        let stranger = TokenRegistry::new(SigningKey::new(b"another-secret!!").unwrap(), Gate::default())
            .mint(Grant::new(Role::Operator, "x"), 1_000);
        book.borrow_mut().insert(ledger_key(&stranger), false);
        assert_eq!(
            host.verify(&stranger.encode(), Verb::ReadTaskState, ctx, 1_000).err(),
            Some(TokenError::BadSignature)
        );
    }

    #[test]
    fn kinds_are_the_design_names() {
        let all = [
            (TokenError::BadSignature, "bad_signature"),
            (TokenError::Malformed("x".into()), "malformed"),
            (TokenError::Expired, "expired"),
            (TokenError::RoleViolation { role: Role::Worker, verb: Verb::AnswerQuery }, "role_violation"),
            (TokenError::UnknownToken, "unknown_token"),
            (TokenError::Revoked, "revoked"),
            (TokenError::UsesExhausted, "uses_exhausted"),
            (TokenError::TaskMismatch, "task_mismatch"),
            (TokenError::DepthExceeded { depth: 3, max: 3 }, "depth_exceeded"),
        ];
        for (err, kind) in all {
            assert_eq!(err.kind(), kind);
        }
        assert_eq!(
            TokenError::RoleViolation { role: Role::Worker, verb: Verb::AnswerQuery }.to_string(),
            "role `worker` may not call `answer_query`"
        );
        assert_eq!(TokenError::DepthExceeded { depth: 3, max: 3 }.to_string(), "spawn depth 3 reaches the limit of 3");
    }

    #[test]
    fn nonces_are_unique_hex_with_a_shared_salt() {
        let a = next_nonce();
        let b = next_nonce();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        assert_eq!(a[..16], b[..16], "one salt per process");
    }

    #[test]
    fn mint_fills_times_and_records_the_grant() {
        let mut reg = registry();
        let t = reg.mint(Grant::new(Role::Worker, "coder").with_ttl_ms(500).with_max_uses(2).for_task("t1", 1), 1_000);
        assert_eq!((t.issued_at, t.expire_at, t.max_uses), (1_000, 1_500, Some(2)));
        assert!(t.signature_valid(&SigningKey::new(b"unit-test-secret").unwrap()));
        assert_eq!(reg.len(), 1);
        let record = &reg.records[&record_key(&t.nonce)];
        assert_eq!((record.uses, record.task.as_deref(), record.depth, record.expire_at), (0, Some("t1"), 1, 1_500));
        let forever = reg.mint(Grant::new(Role::Operator, "op"), 1_000);
        assert_eq!(forever.expire_at, u64::MAX);
        assert_eq!(forever.max_uses, None);
        // A huge ttl saturates rather than wrapping into the past.
        let huge = reg.mint(Grant::new(Role::Operator, "op").with_ttl_ms(u64::MAX), 1_000);
        assert_eq!(huge.expire_at, u64::MAX);
    }

    #[test]
    fn records_are_keyed_by_a_digest_not_the_nonce() {
        let mut reg = registry();
        let t = reg.mint(Grant::new(Role::Worker, "coder"), 0);
        let key = reg.records.keys().next().unwrap();
        let mut hex = [0u8; 64];
        hex_into(key, &mut hex);
        assert_ne!(key.as_slice(), t.nonce.as_bytes());
        assert!(!hex_str(&hex).contains(&t.nonce));
    }

    #[test]
    fn failed_checks_do_not_count_a_use() {
        let mut reg = registry();
        let t = reg.mint(Grant::new(Role::Worker, "coder").with_max_uses(1).for_task("t1", 0), 0);
        let other = VerifyContext { task: Some("t2"), max_depth: None };
        assert_eq!(reg.verify_token(&t, Verb::PostResult, other, 1), Err(TokenError::TaskMismatch));
        let deep = VerifyContext { task: None, max_depth: Some(1) };
        assert!(matches!(reg.verify_token(&t, Verb::StartTask, deep, 1), Err(TokenError::DepthExceeded { .. })));
        assert_eq!(reg.records[&record_key(&t.nonce)].uses, 0);
        reg.verify_token(&t, Verb::PostResult, VerifyContext::default(), 1).unwrap();
        assert_eq!(reg.records[&record_key(&t.nonce)].uses, 1);
    }

    #[test]
    fn purge_drops_exactly_the_expired_records() {
        let mut reg = registry();
        reg.mint(Grant::new(Role::Worker, "a").with_ttl_ms(10), 0);
        reg.mint(Grant::new(Role::Worker, "b").with_ttl_ms(20), 0);
        reg.mint(Grant::new(Role::Operator, "op"), 0);
        assert_eq!(reg.purge_expired(9), 0);
        assert_eq!(reg.purge_expired(10), 1);
        assert_eq!(reg.len(), 2);
        assert_eq!(reg.purge_expired(u64::MAX - 1), 1);
        assert_eq!(reg.len(), 1, "a token that never expires is never purged");
    }

    #[test]
    fn forget_reports_whether_there_was_a_record() {
        let mut reg = registry();
        let t = reg.mint(Grant::new(Role::Worker, "a"), 0);
        assert!(reg.forget(&t));
        assert!(!reg.forget(&t));
        assert!(reg.is_empty());
    }

    #[test]
    fn gate_changes_apply_to_minted_tokens() {
        let mut reg = registry();
        let t = reg.mint(Grant::new(Role::Observer, "watcher"), 0);
        assert!(reg.verify_token(&t, Verb::ReadTrace, VerifyContext::default(), 1).is_ok());
        reg.gate_mut().set(Role::Observer, Verb::ReadTrace, false);
        assert_eq!(
            reg.verify_token(&t, Verb::ReadTrace, VerifyContext::default(), 1),
            Err(TokenError::RoleViolation { role: Role::Observer, verb: Verb::ReadTrace })
        );
        assert!(format!("{reg:?}").contains("records: 1"));
    }

    #[test]
    fn held_tokens_pass_every_check_but_the_signature() {
        let mut reg = registry();
        let ctx = VerifyContext::default();
        let held =
            reg.mint_held(Grant::new(Role::Worker, "w").for_task("t1", 2).with_max_uses(2).with_ttl_ms(100), 1_000);
        let caller = reg
            .verify_held(&held, Verb::PostResult, VerifyContext { task: Some("t1"), max_depth: None }, 1_000)
            .unwrap();
        assert_eq!(caller, Caller { role: Role::Worker, task: Some(Arc::from("t1")), depth: 2 });
        // The same checks, in the same order, as a presented token.
        assert_eq!(
            reg.verify_held(&held, Verb::AnswerQuery, ctx, 1_000),
            Err(TokenError::RoleViolation { role: Role::Worker, verb: Verb::AnswerQuery })
        );
        assert_eq!(
            reg.verify_held(&held, Verb::PostResult, VerifyContext { task: Some("t2"), max_depth: None }, 1_000),
            Err(TokenError::TaskMismatch)
        );
        assert_eq!(
            reg.verify_held(&held, Verb::StartTask, VerifyContext { task: None, max_depth: Some(3) }, 1_000),
            Err(TokenError::DepthExceeded { depth: 3, max: 3 })
        );
        assert_eq!(reg.verify_held(&held, Verb::PostResult, ctx, 1_100), Err(TokenError::Expired));
        assert!(reg.verify_held(&held, Verb::PostResult, ctx, 1_000).is_ok());
        assert_eq!(
            reg.verify_held(&held, Verb::PostResult, ctx, 1_000),
            Err(TokenError::UsesExhausted),
            "two uses only"
        );
        // A held token and its transport form share one record.
        let other = reg.mint_held(Grant::new(Role::Observer, "o"), 1_000);
        reg.revoke(&other.encode()).unwrap();
        assert_eq!(reg.verify_held(&other, Verb::ReadTrace, ctx, 1_000), Err(TokenError::Revoked));
        assert!(reg.forget_held(&other));
        assert_eq!(reg.verify_held(&other, Verb::ReadTrace, ctx, 1_000), Err(TokenError::UnknownToken));
        assert_eq!(reg.verify(&other.encode(), Verb::ReadTrace, ctx, 1_000), Err(TokenError::UnknownToken));
    }

    #[test]
    fn a_held_token_handed_out_verifies_like_any_other() {
        let mut reg = registry();
        let held = reg.mint_held(Grant::new(Role::Worker, "w").for_task("t1", 0), 1_000);
        let text = held.encode();
        let verified =
            reg.verify(&text, Verb::FetchData, VerifyContext { task: Some("t1"), max_depth: None }, 1_000).unwrap();
        assert_eq!(verified.fingerprint, held.token().fingerprint());
        assert!(!format!("{held:?}").contains(&held.token().sig), "no signature in Debug");
    }
}
