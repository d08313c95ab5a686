//! The errors of the gate: why a token was refused.

use super::{Role, Verb};

/// Why a token was refused. Each variant is one error kind of docs/engine.md, "Tokens".
///
/// Messages never hold the token, its nonce or its signature; callers that need to say which
/// token failed log [`super::CapToken::fingerprint`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The signature is not this registry's MAC of the token: forged, tampered or foreign.
    #[error("token signature does not verify")]
    BadSignature,
    /// The reason is ours (what was wrong), never an excerpt of the input.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `now >= expire_at`.
    #[error("token has expired")]
    Expired,
    /// The gate does not allow the token's role this verb.
    #[error("role `{role}` may not call `{verb}`")]
    RoleViolation {
        /// The token's role.
        role: Role,
        /// The verb it called.
        verb: Verb,
    },
    /// Validly signed, but the registry holds no record of it.
    #[error("token is not known here: not minted by this registry, or already forgotten")]
    UnknownToken,
    /// The token was revoked (`revoke_token`).
    #[error("token has been revoked")]
    Revoked,
    /// `max_uses` successful verifications have been made already.
    #[error("token has no uses left")]
    UsesExhausted,
    /// The token is bound to a task other than the one the verb acts on.
    #[error("token is bound to another task")]
    TaskMismatch,
    /// `depth` is the depth the new sub-task would have (the token's task depth + 1).
    #[error("spawn depth {depth} reaches the limit of {max}")]
    DepthExceeded {
        /// The depth the sub-task would have.
        depth: u32,
        /// The configured limit.
        max: u32,
    },
}

impl TokenError {
    /// The error kind's stable name, as in docs/engine.md.
    pub fn kind(&self) -> &'static str {
        match self {
            TokenError::BadSignature => "bad_signature",
            TokenError::Malformed(_) => "malformed",
            TokenError::Expired => "expired",
            TokenError::RoleViolation { .. } => "role_violation",
            TokenError::UnknownToken => "unknown_token",
            TokenError::Revoked => "revoked",
            TokenError::UsesExhausted => "uses_exhausted",
            TokenError::TaskMismatch => "task_mismatch",
            TokenError::DepthExceeded { .. } => "depth_exceeded",
        }
    }
}
