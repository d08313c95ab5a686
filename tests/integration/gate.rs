//! The capability gate through the public API: the role × verb table, and every way a token can
//! be refused, each asserting the exact error kind (docs/engine.md, "Tokens").

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use luaswarm::gate::{
    CapToken, Gate, Grant, Role, SigningKey, TokenError, TokenRegistry, Verb, Verified, VerifyContext,
};

const SECRET: &str = "integration-test-secret";
const NOW: u64 = 1_700_000_000_000;

fn key() -> SigningKey {
    SigningKey::from_config(Some(SECRET)).unwrap()
}

fn registry() -> TokenRegistry {
    TokenRegistry::new(key(), Gate::default())
}

/// A worker token for task `t1` at depth 0, good for a minute and unlimited uses.
fn worker(reg: &mut TokenRegistry) -> CapToken {
    reg.mint(Grant::new(Role::Worker, "coder").with_scopes(["*"]).with_ttl_ms(60_000).for_task("t1", 0), NOW)
}

fn any() -> VerifyContext<'static> {
    VerifyContext::default()
}

fn task(id: &str) -> VerifyContext<'_> {
    VerifyContext { task: Some(id), max_depth: None }
}

fn spawn(max_depth: u32) -> VerifyContext<'static> {
    VerifyContext { task: None, max_depth: Some(max_depth) }
}

/// The error kind of verifying `text` for `verb` at `now`.
fn kind_of(reg: &mut TokenRegistry, text: &str, verb: Verb, ctx: VerifyContext<'_>, now: u64) -> &'static str {
    match reg.verify(text, verb, ctx, now) {
        Ok(v) => panic!("expected a refusal, got {v:?}"),
        Err(e) => e.kind(),
    }
}

// ---------------------------------------------------------------------------------------------
// The gate

/// The documented gate table as a grid (o = operator, w = worker, b = observer, s = senior), a
/// second copy independent of `Gate::default` and of the unit test's list.
const GRID: &str = "
    verb               o w b s
    start_task         x x . .
    dispatch_attempt   x x . .
    mint_worker_token  x . . .
    read_task_state    x x x .
    cancel_task        x x . .
    query_senior       x . . .
    mark_pass          x . . .
    mark_blocked       x . . .
    attach_session     x . . .
    detach_session     x . . .
    heartbeat          x . . .
    poll_task          x x . .
    fetch_prompt       . x . .
    fetch_data         . x . .
    post_result        . x . .
    verify_token       . x . .
    emit_output        . x . .
    subscribe_events   x . x .
    read_trace         x . x .
    answer_query       x . . x
    override_verdict   . . . x
    pause_loop         . . . x
    resume_loop        . . . x
    inject_directive   . . . x
";

#[test]
fn gate_matrix_matches_design_for_every_role_and_verb() {
    let gate = Gate::default();
    let roles = [Role::Operator, Role::Worker, Role::Observer, Role::Senior];
    let mut rows = 0;
    for line in GRID.lines().map(str::trim).filter(|l| !l.is_empty()).skip(1) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells.len(), 5, "grid row {line:?}");
        let verb: Verb = cells[0].parse().unwrap();
        for (role, cell) in roles.iter().zip(&cells[1..]) {
            assert_eq!(gate.allows(*role, verb), *cell == "x", "{role} × {verb}");
        }
        rows += 1;
    }
    assert_eq!(rows, Verb::ALL.len(), "the grid covers every verb");
}

#[test]
fn gate_allows_only_granted_verbs_through_tokens() {
    let mut reg = registry();
    for role in Role::ALL {
        let token = reg.mint(Grant::new(role, "agent"), NOW);
        for verb in Verb::ALL {
            let result = reg.verify_token(&token, verb, any(), NOW);
            if reg.gate().allows(role, verb) {
                assert!(result.is_ok(), "{role} × {verb}: {result:?}");
            } else {
                assert_eq!(result, Err(TokenError::RoleViolation { role, verb }));
            }
        }
    }
}

#[test]
fn a_replaced_gate_is_the_one_enforced() {
    let mut gate = Gate::empty();
    gate.set(Role::Observer, Verb::MarkPass, true);
    let mut reg = TokenRegistry::new(key(), gate);
    let observer = reg.mint(Grant::new(Role::Observer, "watcher"), NOW);
    assert!(reg.verify_token(&observer, Verb::MarkPass, any(), NOW).is_ok());
    assert_eq!(reg.verify_token(&observer, Verb::ReadTrace, any(), NOW).unwrap_err().kind(), "role_violation");
}

// ---------------------------------------------------------------------------------------------
// The happy path

#[test]
fn a_valid_token_verifies_from_its_transport_form() {
    let mut reg = registry();
    let token = worker(&mut reg);
    let verified = reg.verify(&token.encode(), Verb::PostResult, task("t1"), NOW).unwrap();
    assert_eq!(
        verified,
        Verified {
            agent_id: "coder".into(),
            role: Role::Worker,
            scopes: vec!["*".into()],
            task: Some("t1".into()),
            depth: 0,
            fingerprint: token.fingerprint(),
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Signature attacks

#[test]
fn a_flipped_signature_byte_is_a_bad_signature() {
    let mut reg = registry();
    let mut token = worker(&mut reg);
    let first = token.sig.as_bytes()[0];
    let flipped = if first == b'0' { '1' } else { '0' };
    token.sig.replace_range(0..1, &flipped.to_string());
    assert_eq!(kind_of(&mut reg, &token.encode(), Verb::PostResult, any(), NOW), "bad_signature");
}

/// Changes one field of a validly signed token without re-signing it.
fn assert_tampering_breaks_the_signature(tamper: impl FnOnce(&mut CapToken)) {
    let mut reg = registry();
    let mut token =
        reg.mint(Grant::new(Role::Worker, "coder").with_scopes(["read"]).with_ttl_ms(60_000).with_max_uses(1), NOW);
    let before = token.clone();
    tamper(&mut token);
    assert_ne!(token, before, "the tampering changed nothing");
    // FetchData is a worker-only verb: a role tampered to operator must fail on its signature,
    // which is checked before the gate.
    assert_eq!(kind_of(&mut reg, &token.encode(), Verb::FetchData, any(), NOW), "bad_signature");
}

#[test]
fn tampered_role_is_a_bad_signature() {
    assert_tampering_breaks_the_signature(|t| t.role = Role::Operator);
}

#[test]
fn tampered_agent_id_is_a_bad_signature() {
    assert_tampering_breaks_the_signature(|t| t.agent_id = "admin".into());
}

#[test]
fn tampered_scopes_are_a_bad_signature() {
    assert_tampering_breaks_the_signature(|t| t.scopes.push("*".into()));
}

#[test]
fn tampered_issued_at_is_a_bad_signature() {
    assert_tampering_breaks_the_signature(|t| t.issued_at -= 1);
}

#[test]
fn tampered_expire_at_is_a_bad_signature() {
    assert_tampering_breaks_the_signature(|t| t.expire_at = u64::MAX);
}

#[test]
fn tampered_max_uses_is_a_bad_signature() {
    assert_tampering_breaks_the_signature(|t| t.max_uses = None);
    assert_tampering_breaks_the_signature(|t| t.max_uses = Some(1_000));
}

#[test]
fn tampered_nonce_is_a_bad_signature() {
    assert_tampering_breaks_the_signature(|t| t.nonce.replace_range(0..1, "x"));
}

#[test]
fn a_token_from_another_secret_is_a_bad_signature() {
    let mut other = TokenRegistry::new(SigningKey::from_config(Some("another-secret")).unwrap(), Gate::default());
    let foreign = worker(&mut other);
    let mut reg = registry();
    assert_eq!(kind_of(&mut reg, &foreign.encode(), Verb::PostResult, any(), NOW), "bad_signature");
}

#[test]
fn a_token_from_another_random_key_is_a_bad_signature() {
    let mut other = TokenRegistry::new(SigningKey::random().unwrap(), Gate::default());
    let foreign = worker(&mut other);
    let mut reg = TokenRegistry::new(SigningKey::random().unwrap(), Gate::default());
    assert_eq!(reg.verify_token(&foreign, Verb::PostResult, any(), NOW).unwrap_err().kind(), "bad_signature");
}

// ---------------------------------------------------------------------------------------------
// Malformed input

fn malformed(text: &str) {
    let mut reg = registry();
    assert_eq!(kind_of(&mut reg, text, Verb::PostResult, any(), NOW), "malformed", "{text:?}");
}

#[test]
fn garbage_is_malformed() {
    malformed("");
    malformed("🦀 definitely not a token");
}

#[test]
fn non_base64_is_malformed() {
    malformed("abc$def");
    // Standard base64 with padding is not the transport form.
    malformed("eyJhIjoxfQ==");
}

#[test]
fn base64_of_non_json_is_malformed() {
    malformed(&URL_SAFE_NO_PAD.encode("agent_id=coder;role=worker"));
    malformed(&URL_SAFE_NO_PAD.encode([0xff, 0x00, 0x13]));
}

#[test]
fn json_missing_a_field_is_malformed() {
    let mut reg = registry();
    let token = worker(&mut reg);
    let mut json: serde_json::Value = serde_json::to_value(&token).unwrap();
    json.as_object_mut().unwrap().remove("expire_at");
    let text = URL_SAFE_NO_PAD.encode(json.to_string());
    assert_eq!(
        reg.verify(&text, Verb::PostResult, any(), NOW),
        Err(TokenError::Malformed("missing field `expire_at`".into()))
    );
}

#[test]
fn json_with_an_unknown_field_is_malformed() {
    let mut reg = registry();
    let token = worker(&mut reg);
    let mut json: serde_json::Value = serde_json::to_value(&token).unwrap();
    json["admin"] = true.into();
    assert_eq!(kind_of(&mut reg, &URL_SAFE_NO_PAD.encode(json.to_string()), Verb::PostResult, any(), NOW), "malformed");
}

// ---------------------------------------------------------------------------------------------
// Expiry, uses, revocation, records

#[test]
fn expiry_boundary_is_now_equal_to_expire_at() {
    let mut reg = registry();
    let token = worker(&mut reg);
    let text = token.encode();
    assert!(reg.verify(&text, Verb::PostResult, any(), token.expire_at - 1).is_ok());
    assert_eq!(kind_of(&mut reg, &text, Verb::PostResult, any(), token.expire_at), "expired");
    assert_eq!(kind_of(&mut reg, &text, Verb::PostResult, any(), token.expire_at + 1), "expired");
}

#[test]
fn a_token_without_ttl_never_expires() {
    let mut reg = registry();
    let token = reg.mint(Grant::new(Role::Operator, "op"), NOW);
    assert!(reg.verify_token(&token, Verb::StartTask, any(), u64::MAX - 1).is_ok());
}

#[test]
fn a_one_time_token_reused_is_exhausted() {
    let mut reg = registry();
    let token = reg.mint(Grant::new(Role::Worker, "coder").with_max_uses(1), NOW);
    let text = token.encode();
    assert!(reg.verify(&text, Verb::FetchPrompt, any(), NOW).is_ok());
    assert_eq!(kind_of(&mut reg, &text, Verb::FetchPrompt, any(), NOW), "uses_exhausted");
}

#[test]
fn a_token_limited_to_n_uses_works_n_times() {
    let mut reg = registry();
    let n = 5;
    let token = reg.mint(Grant::new(Role::Worker, "coder").with_max_uses(n), NOW);
    for use_no in 1..=n {
        assert!(reg.verify_token(&token, Verb::FetchData, any(), NOW).is_ok(), "use {use_no}");
    }
    assert_eq!(reg.verify_token(&token, Verb::FetchData, any(), NOW), Err(TokenError::UsesExhausted));
}

#[test]
fn a_token_with_zero_uses_is_exhausted_at_once() {
    let mut reg = registry();
    let token = reg.mint(Grant::new(Role::Worker, "coder").with_max_uses(0), NOW);
    assert_eq!(reg.verify_token(&token, Verb::FetchData, any(), NOW), Err(TokenError::UsesExhausted));
}

#[test]
fn a_revoked_token_is_revoked() {
    let mut reg = registry();
    let token = worker(&mut reg);
    let text = token.encode();
    assert!(reg.verify(&text, Verb::PostResult, any(), NOW).is_ok());
    reg.revoke(&text).unwrap();
    assert_eq!(kind_of(&mut reg, &text, Verb::PostResult, any(), NOW), "revoked");
    assert_eq!(reg.len(), 1, "the revoked record stays until it expires");
    assert_eq!(reg.purge_expired(token.expire_at), 1);
    assert_eq!(kind_of(&mut reg, &text, Verb::PostResult, any(), NOW), "unknown_token");
}

#[test]
fn only_a_validly_signed_known_token_can_be_revoked() {
    let mut reg = registry();
    let token = worker(&mut reg);
    let mut forged = token.clone();
    forged.agent_id = "mallory".into();
    assert_eq!(reg.revoke(&forged.encode()), Err(TokenError::BadSignature));
    assert_eq!(reg.revoke("%%%").unwrap_err().kind(), "malformed");
    assert!(reg.verify_token(&token, Verb::PostResult, any(), NOW).is_ok(), "the forged revoke did nothing");
    reg.forget(&token);
    assert_eq!(reg.revoke_token(&token), Err(TokenError::UnknownToken));
}

#[test]
fn a_forgotten_token_is_unknown() {
    let mut reg = registry();
    let token = worker(&mut reg);
    assert!(reg.forget(&token));
    assert_eq!(reg.len(), 0);
    assert!(token.signature_valid(&key()), "still validly signed");
    assert_eq!(kind_of(&mut reg, &token.encode(), Verb::PostResult, any(), NOW), "unknown_token");
}

#[test]
fn a_token_signed_with_the_same_secret_elsewhere_is_unknown_here() {
    // Same secret, different registry: the signature holds, but this registry has no record.
    let mut minting = registry();
    let token = worker(&mut minting);
    let mut reg = registry();
    assert_eq!(kind_of(&mut reg, &token.encode(), Verb::PostResult, any(), NOW), "unknown_token");
}

// ---------------------------------------------------------------------------------------------
// Task binding, spawn depth, roles

#[test]
fn a_worker_token_used_for_another_task_is_a_task_mismatch() {
    let mut reg = registry();
    let token = worker(&mut reg);
    assert_eq!(reg.verify_token(&token, Verb::PostResult, task("t2"), NOW), Err(TokenError::TaskMismatch));
    assert!(reg.verify_token(&token, Verb::PostResult, task("t1"), NOW).is_ok());
    // Verbs that name no existing task (start_task) pass no task.
    assert!(reg.verify_token(&token, Verb::StartTask, any(), NOW).is_ok());
}

#[test]
fn an_unbound_token_may_act_on_any_task() {
    let mut reg = registry();
    let op = reg.mint(Grant::new(Role::Operator, "op"), NOW);
    assert!(reg.verify_token(&op, Verb::ReadTaskState, task("anything"), NOW).is_ok());
}

#[test]
fn spawn_depth_limit_is_depth_plus_one_reaching_max() {
    let mut reg = registry();
    let at_depth_2 = reg.mint(Grant::new(Role::Worker, "coder").for_task("t9", 2), NOW);
    // A sub-task would be at depth 3.
    assert!(reg.verify_token(&at_depth_2, Verb::StartTask, spawn(4), NOW).is_ok());
    assert_eq!(
        reg.verify_token(&at_depth_2, Verb::StartTask, spawn(3), NOW),
        Err(TokenError::DepthExceeded { depth: 3, max: 3 })
    );
    assert_eq!(reg.verify_token(&at_depth_2, Verb::StartTask, spawn(2), NOW).unwrap_err().kind(), "depth_exceeded");
    let top = reg.mint(Grant::new(Role::Worker, "coder").for_task("t0", 0), NOW);
    assert_eq!(reg.verify_token(&top, Verb::StartTask, spawn(1), NOW).unwrap_err().kind(), "depth_exceeded");
    assert!(reg.verify_token(&top, Verb::StartTask, spawn(2), NOW).is_ok());
}

#[test]
fn a_worker_answering_a_query_is_a_role_violation() {
    let mut reg = registry();
    let token = worker(&mut reg);
    assert_eq!(
        reg.verify(&token.encode(), Verb::AnswerQuery, any(), NOW),
        Err(TokenError::RoleViolation { role: Role::Worker, verb: Verb::AnswerQuery })
    );
}

// ---------------------------------------------------------------------------------------------
// Verification order: when several checks would fail, the first in the documented order is named.

#[test]
fn order_signature_before_expiry() {
    let mut reg = registry();
    let mut token = worker(&mut reg);
    token.sig.replace_range(0..2, if token.sig.starts_with("00") { "11" } else { "00" });
    assert_eq!(kind_of(&mut reg, &token.encode(), Verb::PostResult, any(), token.expire_at + 1), "bad_signature");
}

#[test]
fn order_expiry_before_role() {
    let mut reg = registry();
    let token = worker(&mut reg);
    assert_eq!(kind_of(&mut reg, &token.encode(), Verb::AnswerQuery, any(), token.expire_at), "expired");
}

#[test]
fn order_role_before_record() {
    let mut reg = registry();
    let token = worker(&mut reg);
    reg.forget(&token);
    assert_eq!(kind_of(&mut reg, &token.encode(), Verb::AnswerQuery, any(), NOW), "role_violation");
}

#[test]
fn order_revoked_before_exhausted() {
    let mut reg = registry();
    let token = reg.mint(Grant::new(Role::Worker, "coder").with_max_uses(1), NOW);
    reg.verify_token(&token, Verb::PostResult, any(), NOW).unwrap();
    reg.revoke_token(&token).unwrap();
    assert_eq!(reg.verify_token(&token, Verb::PostResult, any(), NOW).unwrap_err().kind(), "revoked");
}

#[test]
fn order_record_before_task_binding_before_depth() {
    let mut reg = registry();
    let token = reg.mint(Grant::new(Role::Worker, "coder").with_max_uses(1).for_task("t1", 5), NOW);
    let wrong_task_too_deep = VerifyContext { task: Some("t2"), max_depth: Some(2) };
    assert_eq!(
        reg.verify_token(&token, Verb::StartTask, wrong_task_too_deep, NOW).unwrap_err().kind(),
        "task_mismatch"
    );
    let right_task_too_deep = VerifyContext { task: Some("t1"), max_depth: Some(2) };
    assert_eq!(
        reg.verify_token(&token, Verb::StartTask, right_task_too_deep, NOW).unwrap_err().kind(),
        "depth_exceeded"
    );
    // Failed checks took no use; spend the only one, then exhaustion wins over the binding.
    reg.verify_token(&token, Verb::StartTask, task("t1"), NOW).unwrap();
    assert_eq!(
        reg.verify_token(&token, Verb::StartTask, wrong_task_too_deep, NOW).unwrap_err().kind(),
        "uses_exhausted"
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets stay out of text

/// Every refusal the API can produce, each from a real failure.
fn every_error(reg: &mut TokenRegistry, token: &CapToken) -> Vec<TokenError> {
    let text = token.encode();
    let mut tampered = token.clone();
    tampered.agent_id.push('!');
    // A malformed token whose bad field holds the real signature and nonce: the reason must not
    // echo them.
    let mut json: serde_json::Value = serde_json::to_value(token).unwrap();
    json["issued_at"] = format!("{}{}", token.sig, token.nonce).into();
    let echo_bait = URL_SAFE_NO_PAD.encode(json.to_string());

    let mut errors = vec![
        reg.verify(&tampered.encode(), Verb::PostResult, any(), NOW).unwrap_err(),
        reg.verify(&echo_bait, Verb::PostResult, any(), NOW).unwrap_err(),
        reg.verify(&text[..text.len() / 2], Verb::PostResult, any(), NOW).unwrap_err(),
        reg.verify(&text, Verb::PostResult, any(), token.expire_at).unwrap_err(),
        reg.verify(&text, Verb::AnswerQuery, any(), NOW).unwrap_err(),
        reg.verify(&text, Verb::PostResult, task("t2"), NOW).unwrap_err(),
        reg.verify(&text, Verb::StartTask, spawn(1), NOW).unwrap_err(),
    ];
    let once = reg.mint(Grant::new(Role::Worker, "coder").with_max_uses(0), NOW);
    errors.push(reg.verify_token(&once, Verb::PostResult, any(), NOW).unwrap_err());
    reg.revoke(&text).unwrap();
    errors.push(reg.verify(&text, Verb::PostResult, any(), NOW).unwrap_err());
    reg.forget(token);
    errors.push(reg.verify(&text, Verb::PostResult, any(), NOW).unwrap_err());
    errors
}

#[test]
fn no_error_text_contains_the_token_nonce_or_signature() {
    let mut reg = registry();
    let token = worker(&mut reg);
    let errors = every_error(&mut reg, &token);
    let mut kinds: Vec<&str> = errors.iter().map(TokenError::kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(kinds.len(), 9, "every kind is exercised: {kinds:?}");
    let secrets = [token.encode(), token.nonce.clone(), token.sig.clone()];
    for err in &errors {
        for text in [err.to_string(), format!("{err:?}")] {
            for secret in &secrets {
                assert!(!text.contains(secret.as_str()), "{} leaks a secret: {text}", err.kind());
            }
        }
    }
}

#[test]
fn debug_of_token_and_key_holds_no_secret() {
    let mut reg = registry();
    let token = worker(&mut reg);
    let token_debug = format!("{token:?}");
    for secret in [token.encode(), token.nonce.clone(), token.sig.clone()] {
        assert!(!token_debug.contains(&secret), "{token_debug}");
    }
    assert!(token_debug.contains(&token.fingerprint()));
    let key_debug = format!("{:?} {:?}", key(), reg);
    assert!(!key_debug.contains(SECRET), "{key_debug}");
}

/// The only test that touches the process environment (tests run on parallel threads); every
/// other test builds its key from a literal.
#[test]
fn swarm_token_secret_env_is_honoured() {
    // Other tests start engines that read SWARM_TOKEN_SECRET: this one changes it in a process
    // of its own.
    if !crate::util::alone("gate::swarm_token_secret_env_is_honoured") {
        return;
    }
    const ENV_SECRET: &str = "secret-from-the-environment";
    // SAFETY: alone in its process, no other thread reads or writes the environment, and
    // nothing here calls into C code that might read it concurrently.
    unsafe { std::env::set_var("SWARM_TOKEN_SECRET", ENV_SECRET) };
    let from_env = SigningKey::from_config(None);
    let config_wins = SigningKey::from_config(Some(SECRET));
    unsafe { std::env::set_var("SWARM_TOKEN_SECRET", "") };
    let empty = SigningKey::from_config(None);
    unsafe { std::env::remove_var("SWARM_TOKEN_SECRET") };

    let mut reg = TokenRegistry::new(from_env.unwrap(), Gate::default());
    let token = worker(&mut reg);
    assert!(token.signature_valid(&SigningKey::from_config(Some(ENV_SECRET)).unwrap()));
    assert!(!token.signature_valid(&key()));
    let mut config_reg = TokenRegistry::new(config_wins.unwrap(), Gate::default());
    assert!(worker(&mut config_reg).signature_valid(&key()), "a configured secret beats the environment");
    assert_eq!(empty.unwrap_err().to_string(), "the token secret from SWARM_TOKEN_SECRET is empty");
}
