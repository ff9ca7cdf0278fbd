//! Times tokengate's pure code in whatever runs this program (Node's V8 through run.mjs, or
//! natively with `cargo run --release -- <cases dir>`), on the acceptance cases' valid tokens.
//! Each line gives the fastest and the median of 15 batches of about 20 ms, after 300 ms of
//! warm-up (V8 compiles hot code as it runs); on a shared machine the fastest batch is the
//! steadier figure. Timings are for comparing builds on one machine, never for a test.

use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokengate::hostcrypto::SignatureHost;
use tokengate::verified::VerifiedCache;
use tokengate::{crypto, jwks, token, verify};

/// A host that accepts every signature: what is left is tokengate's own work around it.
#[derive(Debug)]
struct AcceptAll;

impl SignatureHost for AcceptAll {
    fn verify(&self, _: &str, _: &[u8], _: &[u8], _: &[u8]) -> Option<bool> {
        Some(true)
    }
}

fn time(name: &str, mut f: impl FnMut()) {
    let warm = Instant::now();
    let mut calls = 0u64;
    while warm.elapsed() < Duration::from_millis(300) {
        f();
        calls += 1;
    }
    // Batches of about 20 ms each.
    let per_batch = (calls / 15).max(1);
    let mut batches: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_batch {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / per_batch as f64
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    println!("| {name} | {:.2} | {:.2} |", batches[0], batches[7]);
}

fn case_token(cases: &serde_json::Value, id: &str) -> String {
    let case = cases.as_array().and_then(|all| all.iter().find(|c| c["id"] == id));
    case.and_then(|c| c["header_values"][0].as_str()).unwrap_or_else(|| panic!("no case {id}")).to_owned()
}

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "../../../shared/cases".into());
    let read = |name: &str| std::fs::read(format!("{dir}/{name}")).unwrap_or_else(|e| panic!("{dir}/{name}: {e}"));
    let cases: serde_json::Value = serde_json::from_slice(&read("cases.json")).expect("cases.json");
    let keys = jwks::parse(&read("jwks_main.json")).expect("jwks_main.json").keys;
    let policy = verify::Policy { clock_skew_seconds: 60, issuer: None, audiences: vec![], scope: None };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    println!("| step | µs per call, fastest batch | median batch |\n|---|---:|---:|");
    for (alg, id) in [("RS256", "pos-01-rs256"), ("ES256", "pos-02-es256"), ("EdDSA", "pos-03-eddsa")] {
        let raw = case_token(&cases, id);
        let parsed = token::parse(raw.as_bytes()).expect("a valid case token");
        assert!(verify::verify(&parsed, &keys, &policy, now).is_ok(), "{id} does not verify now");
        time(&format!("{alg}: parse the token ({} bytes)", raw.len()), || {
            black_box(token::parse(black_box(raw.as_bytes())).ok());
        });
        if alg != "EdDSA" {
            time(&format!("{alg}: checks around a signature the host accepts"), || {
                black_box(verify::verify_with(black_box(&parsed), &keys, &policy, now, &AcceptAll).ok());
            });
        }
        if alg == "EdDSA" {
            // The case key verifies every call, so it would get its fixed-base table after
            // crypto::ED25519_TABLE_AFTER calls: first time it while the VM's tables are all
            // taken (by keys of this program's own), then with its table.
            let busy = busy_keys();
            time("EdDSA: verify in Wasm, key without a table", || {
                black_box(verify::verify(black_box(&parsed), &keys, &policy, now).ok());
            });
            drop(busy);
            time("EdDSA: verify in Wasm, key with its table (a key that signs many tokens)", || {
                black_box(verify::verify(black_box(&parsed), &keys, &policy, now).ok());
            });
        } else {
            time(&format!("{alg}: verify in Wasm (signature and claims)"), || {
                black_box(verify::verify(black_box(&parsed), &keys, &policy, now).ok());
            });
        }
        let mut cache = VerifiedCache::new(tokengate::verified::DEFAULT_ENTRIES, 60);
        let claims = Rc::new(verify::verify(&parsed, &keys, &policy, now).unwrap_or_default());
        cache.insert(raw.as_bytes(), 1, &claims);
        time(&format!("{alg}: verified-token cache hit"), || {
            black_box(cache.get(black_box(raw.as_bytes()), 1, now));
        });
    }
}

/// Ed25519 keys that hold every fixed-base table a VM allows, each having verified
/// `ED25519_TABLE_AFTER` signatures of its own.
fn busy_keys() -> Vec<crypto::PublicKey> {
    (0..crypto::ED25519_MAX_TABLES)
        .map(|i| {
            let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([i as u8 + 1; 32]));
            let key = crypto::PublicKey::ed25519(pair.pk.as_ref()).expect("a valid key");
            for n in 0..crypto::ED25519_TABLE_AFTER {
                let message = format!("message {n}");
                let signature = pair.sk.sign(message.as_bytes(), None);
                assert!(key.verify(crypto::Alg::EdDSA, message.as_bytes(), signature.as_ref()));
            }
            key
        })
        .collect()
}
