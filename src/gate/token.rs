//! The capability token and the key that signs it.
//!
//! A [`CapToken`] is a plain struct; its authenticity is its `sig`, an HMAC-SHA256 under the
//! registry's [`SigningKey`] over a canonical encoding of every other field. Counters (uses,
//! revocation) live server-side in the registry, so a token never changes after signing.
//!
//! Formats, fixed here because other processes (subprocess workers) carry tokens:
//! - times are Unix **milliseconds**; `expire_at = u64::MAX` means "never expires";
//! - `sig` is the MAC as 64 lowercase hex characters;
//! - the transport form ([`CapToken::encode`]) is URL-safe base64 without padding of the
//!   token's JSON, all fields included.

use std::ffi::OsString;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Role;
use super::error::TokenError;

type HmacSha256 = Hmac<Sha256>;

/// The environment variable that supplies the token secret when the config does not.
pub const SECRET_ENV: &str = "SWARM_TOKEN_SECRET";

/// Tags the signed bytes, so a MAC made by this key for any other purpose (or by a later token
/// format) can never pass as a token signature.
const SIG_DOMAIN: &[u8] = b"luaswarm/cap-token/v1\0";

/// The longest transport form `decode` accepts. Tokens arrive from outside (subprocess env,
/// requests); the cap keeps a hostile one from costing a large allocation before it is rejected.
pub const MAX_ENCODED_LEN: usize = 64 * 1024;

/// The length of `sig`: a SHA-256 MAC in hex.
const SIG_HEX_LEN: usize = 64;

/// A capability token: who holds it (`agent_id`, `role`), what for (`scopes`), how long and how
/// often it is good for, and its signature.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapToken {
    /// The agent (or operator, observer, senior) the token speaks for.
    pub agent_id: String,
    /// Decides the verbs the token may call, through the [`Gate`](super::Gate).
    pub role: Role,
    /// Free-form scope names (`"*"` by convention for "everything its role allows").
    pub scopes: Vec<String>,
    /// Unix milliseconds.
    pub issued_at: u64,
    /// Unix milliseconds; the token is expired from this instant on (`now >= expire_at`).
    /// `u64::MAX` never expires.
    pub expire_at: u64,
    /// How many successful verifications the token is good for; `None` is unlimited.
    // `deserialize_with` makes the field required: serde would otherwise read a missing
    // `max_uses` as `None` (unlimited), and a token that omits it is malformed, not generous.
    #[serde(deserialize_with = "required_option")]
    pub max_uses: Option<u64>,
    /// Unique per token; the registry keys its record by a digest of it.
    pub nonce: String,
    /// The MAC over every other field, as lowercase hex. Empty until [`CapToken::sign`].
    pub sig: String,
}

fn required_option<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    Option::<u64>::deserialize(deserializer)
}

/// The JSON field names, to recognise them in serde's messages (see `malformed_json`).
const FIELDS: [&str; 8] = ["agent_id", "role", "scopes", "issued_at", "expire_at", "max_uses", "nonce", "sig"];

impl CapToken {
    /// The transport form: URL-safe base64 (no padding) of the token's JSON. Encodes the token
    /// as it is; it does not sign.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a CapToken always encodes");
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Reads the transport form. Any failure is [`TokenError::Malformed`], whose reason names
    /// what was wrong but never echoes the input.
    pub fn decode(text: &str) -> Result<CapToken, TokenError> {
        if text.len() > MAX_ENCODED_LEN {
            return Err(TokenError::Malformed(format!("longer than {MAX_ENCODED_LEN} bytes")));
        }
        let json = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| TokenError::Malformed("not URL-safe base64 without padding".into()))?;
        serde_json::from_slice(&json).map_err(malformed_json)
    }

    /// Fills `sig` with the MAC of the other fields under `key`.
    pub fn sign(&mut self, key: &SigningKey) {
        let mac = self.mac(key);
        let mut hex = [0u8; SIG_HEX_LEN];
        hex_into(&mac, &mut hex);
        self.sig.clear();
        self.sig.push_str(hex_str(&hex));
    }

    /// Whether `sig` is the MAC of the other fields under `key`. The comparison takes the same
    /// time wherever the first differing byte is, so it leaks nothing about the right MAC.
    pub fn signature_valid(&self, key: &SigningKey) -> bool {
        let mut expected = [0u8; SIG_HEX_LEN];
        hex_into(&self.mac(key), &mut expected);
        // A length mismatch returns early; the length of a MAC is no secret.
        expected.ct_eq(self.sig.as_bytes()).into()
    }

    /// A short (12 hex characters) fingerprint of the nonce and signature: names a token in logs
    /// and errors without revealing anything that would let someone present it.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::new()
            .chain_update((self.nonce.len() as u64).to_be_bytes())
            .chain_update(self.nonce.as_bytes())
            .chain_update(self.sig.as_bytes())
            .finalize();
        let mut hex = [0u8; 12];
        hex_into(&digest[..6], &mut hex);
        hex_str(&hex).to_owned()
    }

    /// The MAC over the canonical encoding (see `write_canonical`).
    fn mac(&self, key: &SigningKey) -> [u8; 32] {
        // Cloning the keyed state skips re-deriving the inner and outer pads from the key.
        let mut mac = key.mac.clone();
        self.write_canonical(&mut mac);
        let mut out = [0u8; 32];
        out.copy_from_slice(&mac.finalize().into_bytes());
        out
    }

    /// The signed bytes: a version tag, then every field but `sig` in a fixed order. Strings are
    /// length-prefixed (u64, big-endian) so no two different tokens share an encoding (a `|` in
    /// an agent id cannot shift a field boundary, as it could with the peer's joined string);
    /// `scopes` is a count and then its items; `max_uses` is a presence byte and then the value,
    /// so `None` and `Some(0)` differ.
    fn write_canonical(&self, mac: &mut HmacSha256) {
        fn bytes(mac: &mut HmacSha256, data: &[u8]) {
            mac.update(&(data.len() as u64).to_be_bytes());
            mac.update(data);
        }
        mac.update(SIG_DOMAIN);
        bytes(mac, self.agent_id.as_bytes());
        bytes(mac, self.role.name().as_bytes());
        mac.update(&(self.scopes.len() as u64).to_be_bytes());
        for scope in &self.scopes {
            bytes(mac, scope.as_bytes());
        }
        mac.update(&self.issued_at.to_be_bytes());
        mac.update(&self.expire_at.to_be_bytes());
        match self.max_uses {
            None => mac.update(&[0]),
            Some(n) => {
                mac.update(&[1]);
                mac.update(&n.to_be_bytes());
            }
        }
        bytes(mac, self.nonce.as_bytes());
    }
}

/// Shows everything but the nonce and signature, which would let a reader present the token;
/// the fingerprint names it instead.
impl fmt::Debug for CapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CapToken")
            .field("agent_id", &self.agent_id)
            .field("role", &self.role)
            .field("scopes", &self.scopes)
            .field("issued_at", &self.issued_at)
            .field("expire_at", &self.expire_at)
            .field("max_uses", &self.max_uses)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// Turns a JSON error into a malformed reason built only from our own words and field names:
/// serde's messages quote offending values, which may be (parts of) a token.
fn malformed_json(err: serde_json::Error) -> TokenError {
    use serde_json::error::Category;
    let reason = match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => "not JSON".to_owned(),
        Category::Data => {
            let msg = err.to_string();
            let field = FIELDS.iter().find(|f| msg.starts_with(&format!("missing field `{f}`")));
            match field {
                Some(f) => format!("missing field `{f}`"),
                None if msg.starts_with("unknown field") => "unknown field".to_owned(),
                None if msg.starts_with("duplicate field") => "a field appears twice".to_owned(),
                None => "a field has the wrong type or value".to_owned(),
            }
        }
    };
    TokenError::Malformed(reason)
}

/// Writes `bytes` as lowercase hex into `out`, which must be exactly twice as long.
pub(super) fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    debug_assert_eq!(out.len(), bytes.len() * 2);
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
}

/// The text of a buffer `hex_into` filled.
pub(super) fn hex_str(hex: &[u8]) -> &str {
    std::str::from_utf8(hex).expect("hex digits are ASCII")
}

/// The secret that signs and checks tokens.
///
/// Holds the HMAC state already keyed with the secret (not the secret itself): each signature
/// starts from a clone of it, which is cheaper than keying a fresh MAC.
#[derive(Clone)]
pub struct SigningKey {
    mac: HmacSha256,
}

/// Why no signing key could be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A secret was given but is empty; signing with it would be signing with no key at all.
    #[error("the token secret from {from} is empty")]
    Empty {
        /// Where the secret came from (the config, the caller, or the environment variable).
        from: &'static str,
    },
    /// `SWARM_TOKEN_SECRET` holds bytes that are not UTF-8.
    #[error("{SECRET_ENV} is not valid UTF-8")]
    NotUnicode,
    /// The OS random number generator failed while making a per-process secret.
    #[error("cannot read the OS random number generator for a token secret: {0}")]
    Random(String),
}

impl SigningKey {
    /// A key from secret bytes (any length but zero).
    pub fn new(secret: &[u8]) -> Result<SigningKey, KeyError> {
        Self::named(secret, "the caller")
    }

    /// A key from 32 bytes of the OS random number generator. Tokens it signs die with the
    /// process, which is right for tokens that never leave it.
    pub fn random() -> Result<SigningKey, KeyError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| KeyError::Random(e.to_string()))?;
        Self::new(&secret)
    }

    /// The key the host uses: `secret` from the config if given, else the `SWARM_TOKEN_SECRET`
    /// environment variable if set, else a random per-process key. An empty secret from either
    /// source is an error rather than a fallback, because it is a misconfiguration.
    pub fn from_config(secret: Option<&str>) -> Result<SigningKey, KeyError> {
        Self::from_sources(secret, std::env::var_os(SECRET_ENV))
    }

    /// `from_config` with the environment read by the caller, so tests need not touch the
    /// process environment (which tests in parallel threads share).
    fn from_sources(config: Option<&str>, env: Option<OsString>) -> Result<SigningKey, KeyError> {
        if let Some(secret) = config {
            return Self::named(secret.as_bytes(), "the config");
        }
        if let Some(value) = env {
            let secret = value.into_string().map_err(|_| KeyError::NotUnicode)?;
            return Self::named(secret.as_bytes(), SECRET_ENV);
        }
        Self::random()
    }

    fn named(secret: &[u8], from: &'static str) -> Result<SigningKey, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::Empty { from });
        }
        let mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        Ok(SigningKey { mac })
    }
}

/// Never shows the secret (nor the keyed state, which is as good as the secret).
impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> SigningKey {
        SigningKey::new(secret.as_bytes()).unwrap()
    }

    fn token() -> CapToken {
        CapToken {
            agent_id: "coder".into(),
            role: Role::Worker,
            scopes: vec!["*".into()],
            issued_at: 1_000,
            expire_at: 61_000,
            max_uses: Some(3),
            nonce: "00112233445566778899aabbccddeeff".into(),
            sig: String::new(),
        }
    }

    #[test]
    fn sign_then_verify_with_the_same_key_only() {
        let mut t = token();
        t.sign(&key("alpha"));
        assert_eq!(t.sig.len(), 64);
        assert!(t.sig.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{}", t.sig);
        assert!(t.signature_valid(&key("alpha")));
        assert!(!t.signature_valid(&key("beta")));
    }

    #[test]
    fn unsigned_or_truncated_signatures_do_not_verify() {
        let k = key("alpha");
        let mut t = token();
        assert!(!t.signature_valid(&k));
        t.sign(&k);
        t.sig.pop();
        assert!(!t.signature_valid(&k));
        t.sign(&k);
        t.sig = t.sig.to_uppercase();
        assert!(!t.signature_valid(&k), "the format is lowercase hex");
    }

    #[test]
    fn signing_is_deterministic_and_idempotent() {
        let k = key("alpha");
        let mut a = token();
        a.sign(&k);
        let first = a.sig.clone();
        a.sign(&k);
        assert_eq!(a.sig, first);
    }

    #[test]
    fn canonical_encoding_separates_fields_unambiguously() {
        let k = key("alpha");
        // Moving characters between adjacent strings must change the signature.
        let mut a = token();
        a.scopes = vec!["ab".into(), "c".into()];
        let mut b = token();
        b.scopes = vec!["a".into(), "bc".into()];
        let mut c = token();
        c.scopes = vec!["abc".into()];
        // `None` and `Some(0)` must differ.
        let mut d = token();
        d.max_uses = None;
        let mut e = token();
        e.max_uses = Some(0);
        let sigs: Vec<String> = [&mut a, &mut b, &mut c, &mut d, &mut e]
            .into_iter()
            .map(|t| {
                t.sign(&k);
                t.sig.clone()
            })
            .collect();
        for i in 0..sigs.len() {
            for j in i + 1..sigs.len() {
                assert_ne!(sigs[i], sigs[j], "tokens {i} and {j} share a signature");
            }
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut t = token();
        t.sign(&key("alpha"));
        let text = t.encode();
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{text}");
        assert_eq!(CapToken::decode(&text).unwrap(), t);
        let mut unlimited = token();
        unlimited.max_uses = None;
        assert_eq!(CapToken::decode(&unlimited.encode()).unwrap(), unlimited);
    }

    fn malformed_reason(text: &str) -> String {
        match CapToken::decode(text) {
            Err(TokenError::Malformed(reason)) => reason,
            other => panic!("expected malformed, got {other:?}"),
        }
    }

    fn encode_json(json: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(json.to_string())
    }

    #[test]
    fn decode_reasons_name_the_problem() {
        assert_eq!(malformed_reason("not base64!"), "not URL-safe base64 without padding");
        assert_eq!(malformed_reason(&URL_SAFE_NO_PAD.encode("plain text")), "not JSON");
        let full = serde_json::to_value(token()).unwrap();
        for field in FIELDS {
            let mut json = full.clone();
            json.as_object_mut().unwrap().remove(field);
            assert_eq!(malformed_reason(&encode_json(&json)), format!("missing field `{field}`"));
        }
        let mut extra = full.clone();
        extra.as_object_mut().unwrap().insert("admin".into(), true.into());
        assert_eq!(malformed_reason(&encode_json(&extra)), "unknown field");
        let mut wrong = full.clone();
        wrong["role"] = "root-secret-value".into();
        assert_eq!(malformed_reason(&encode_json(&wrong)), "a field has the wrong type or value");
        assert!(malformed_reason(&"A".repeat(MAX_ENCODED_LEN + 1)).starts_with("longer than"));
    }

    #[test]
    fn debug_hides_nonce_and_signature() {
        let mut t = token();
        t.sign(&key("alpha"));
        let text = format!("{t:?}");
        assert!(!text.contains(&t.nonce), "{text}");
        assert!(!text.contains(&t.sig), "{text}");
        assert!(text.contains(&t.fingerprint()), "{text}");
        assert!(text.contains("coder"), "{text}");
    }

    #[test]
    fn fingerprint_is_short_hex_and_depends_on_nonce_and_sig() {
        let k = key("alpha");
        let mut a = token();
        a.sign(&k);
        let fp = a.fingerprint();
        assert_eq!(fp.len(), 12);
        assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!a.nonce.contains(&fp) && !a.sig.contains(&fp));
        let mut b = token();
        b.nonce = "ffeeddccbbaa99887766554433221100".into();
        b.sign(&k);
        assert_ne!(b.fingerprint(), fp);
        let mut c = a.clone();
        c.sig = "0".repeat(64);
        assert_ne!(c.fingerprint(), fp);
    }

    #[test]
    fn key_sources_in_priority_order() {
        let secret = |s: &str| Some(OsString::from(s));
        let signed_by = |k: &SigningKey| {
            let mut t = token();
            t.sign(k);
            t
        };
        // Config beats the environment.
        let k = SigningKey::from_sources(Some("from-config"), secret("from-env")).unwrap();
        assert!(signed_by(&k).signature_valid(&key("from-config")));
        // The environment beats a random key.
        let k = SigningKey::from_sources(None, secret("from-env")).unwrap();
        assert!(signed_by(&k).signature_valid(&key("from-env")));
        // Neither: two random keys differ.
        let a = SigningKey::from_sources(None, None).unwrap();
        let b = SigningKey::from_sources(None, None).unwrap();
        assert!(!signed_by(&a).signature_valid(&b));
    }

    #[test]
    fn empty_secrets_are_rejected() {
        assert_eq!(SigningKey::from_sources(Some(""), None).unwrap_err(), KeyError::Empty { from: "the config" });
        assert_eq!(
            SigningKey::from_sources(None, Some(OsString::new())).unwrap_err(),
            KeyError::Empty { from: SECRET_ENV }
        );
        assert_eq!(SigningKey::new(b"").unwrap_err(), KeyError::Empty { from: "the caller" });
        assert_eq!(
            KeyError::Empty { from: SECRET_ENV }.to_string(),
            "the token secret from SWARM_TOKEN_SECRET is empty"
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_env_secret_is_rejected() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![0xff, 0xfe]);
        assert_eq!(SigningKey::from_sources(None, Some(bad)).unwrap_err(), KeyError::NotUnicode);
    }

    #[test]
    fn signing_key_debug_hides_the_secret() {
        let text = format!("{:?}", key("hunter2-very-secret"));
        assert_eq!(text, "SigningKey { .. }");
    }
}
