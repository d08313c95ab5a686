//! What the gate costs on the per-step hot path: minting one worker token per attempt, verifying
//! it (decoded, as the engine holds it, and from its transport form, as a subprocess sends it),
//! and the bare role × verb lookup.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use luaswarm::gate::{Gate, Grant, Role, SigningKey, TokenRegistry, Verb, VerifyContext};

const NOW: u64 = 1_700_000_000_000;

fn registry() -> TokenRegistry {
    TokenRegistry::new(SigningKey::new(b"bench-secret").expect("a key"), Gate::default())
}

fn grant() -> Grant {
    Grant::new(Role::Worker, "coder").with_scopes(["*"]).with_ttl_ms(1_800_000).for_task("task-42", 1)
}

fn tokens(c: &mut Criterion) {
    let mut group = c.benchmark_group("gate");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));

    // Mint and forget, as an attempt does, so the record map stays at its steady size.
    let mut reg = registry();
    group.bench_function("mint_and_forget", |b| {
        b.iter(|| {
            let token = reg.mint(grant(), NOW);
            reg.forget(&token);
            token
        })
    });

    let mut reg = registry();
    let token = reg.mint(grant(), NOW);
    let ctx = VerifyContext { task: Some("task-42"), max_depth: None };
    group.bench_function("verify_token", |b| {
        b.iter(|| reg.verify_token(black_box(&token), Verb::PostResult, ctx, NOW).expect("verifies"))
    });

    let text = token.encode();
    group.bench_function("verify_encoded", |b| {
        b.iter(|| reg.verify(black_box(&text), Verb::PostResult, ctx, NOW).expect("verifies"))
    });

    let gate = Gate::default();
    group.bench_function("gate_allows", |b| b.iter(|| black_box(&gate).allows(Role::Worker, Verb::PostResult)));
    group.finish();
}

criterion_group!(benches, tokens);
criterion_main!(benches);
