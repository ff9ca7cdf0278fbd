//! The built filter imports only proxy-wasm host functions and WASI: anything else (for
//! example wasm-bindgen glue) makes Envoy refuse the module. It exports only the callbacks it
//! implements: Envoy calls every exported callback, and each call into the VM costs time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;

fn wasm_path() -> PathBuf {
    let path = std::env::var_os("TOKENGATE_WASM").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/wasm32-wasip1/release/tokengate.wasm")
    });
    assert!(path.exists(), "{} not found: run `make build`", path.display());
    path
}

fn leb(bytes: &[u8], at: &mut usize) -> usize {
    let (mut value, mut shift) = (0usize, 0);
    loop {
        let b = bytes[*at];
        *at += 1;
        value |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return value;
        }
        shift += 7;
    }
}

fn name(bytes: &[u8], at: &mut usize) -> String {
    let len = leb(bytes, at);
    let s = String::from_utf8(bytes[*at..*at + len].to_vec()).unwrap();
    *at += len;
    s
}

/// (module, name) of every function import.
fn imports(bytes: &[u8]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (id, mut at, _) in sections(bytes) {
        if id == 2 {
            let count = leb(bytes, &mut at);
            for _ in 0..count {
                let module = name(bytes, &mut at);
                let field = name(bytes, &mut at);
                let kind = bytes[at];
                at += 1;
                match kind {
                    0 => {
                        leb(bytes, &mut at);
                    }
                    _ => panic!("non-function import {module}.{field} (kind {kind})"),
                }
                found.push((module, field));
            }
        }
    }
    found
}

/// (id, start, end) of every section.
fn sections(bytes: &[u8]) -> Vec<(u8, usize, usize)> {
    assert_eq!(&bytes[..8], b"\0asm\x01\0\0\0", "not a wasm module");
    let mut at = 8;
    let mut found = Vec::new();
    while at < bytes.len() {
        let id = bytes[at];
        at += 1;
        let size = leb(bytes, &mut at);
        found.push((id, at, at + size));
        at += size;
    }
    found
}

/// The name of every exported function.
fn exported_functions(bytes: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for (id, mut at, _) in sections(bytes) {
        if id == 7 {
            let count = leb(bytes, &mut at);
            for _ in 0..count {
                let field = name(bytes, &mut at);
                let kind = bytes[at];
                at += 1;
                leb(bytes, &mut at);
                if kind == 0 {
                    found.push(field);
                }
            }
        }
    }
    found.sort();
    found
}

#[test]
fn imports_only_proxy_wasm_and_wasi() {
    let bytes = std::fs::read(wasm_path()).unwrap();
    let found = imports(&bytes);
    assert!(found.iter().any(|(m, f)| m == "env" && f == "proxy_log"), "{found:?}");
    for (module, field) in &found {
        let ok = (module == "env" && field.starts_with("proxy_")) || module == "wasi_snapshot_preview1";
        assert!(ok, "unexpected import {module}.{field}");
    }
    eprintln!("{} bytes, {} imports", bytes.len(), found.len());
}

#[test]
fn exports_only_the_callbacks_it_implements() {
    let bytes = std::fs::read(wasm_path()).unwrap();
    let mut want = vec![
        "_initialize",
        "proxy_abi_version_0_2_1",
        "proxy_on_configure",
        "proxy_on_context_create",
        "proxy_on_http_call_response",
        "proxy_on_memory_allocate",
        "proxy_on_request_headers",
        "proxy_on_tick",
        "proxy_on_vm_start",
    ];
    want.sort();
    assert_eq!(exported_functions(&bytes), want);
}
