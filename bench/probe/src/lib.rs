//! A proxy-wasm filter that lets every request through after making the host calls its
//! configuration asks for, each `n` times: `pairs=n` (read the request header map), `value=n`
//! (read one header), `time=n`, `metric=n` (increment a counter), `remove=n`, `add=n` (header
//! edits), e.g. `pairs=1 time=1`. Like tokengate it exports only `proxy_on_context_create` and
//! `proxy_on_request_headers` per request (the proxy-wasm crate's filters, like `bench/noop`,
//! also get the response, done, log and delete callbacks).

use std::cell::Cell;
use std::ptr::null_mut;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_get_header_map_pairs(kind: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_get_header_map_value(kind: u32, key: *const u8, key_size: usize, data: *mut *mut u8, size: *mut usize)
        -> u32;
    fn proxy_add_header_map_value(kind: u32, key: *const u8, key_size: usize, value: *const u8, value_size: usize)
        -> u32;
    fn proxy_remove_header_map_value(kind: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_get_buffer_bytes(kind: u32, start: usize, max: usize, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
}

const NAMES: [&str; 6] = ["pairs", "value", "time", "metric", "remove", "add"];

thread_local! {
    static COUNTS: Cell<[u32; 6]> = const { Cell::new([0; 6]) };
    static METRIC: Cell<u32> = const { Cell::new(0) };
}

/// Takes a buffer the host allocated through `proxy_on_memory_allocate`.
unsafe fn take(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        Vec::from_raw_parts(data, size, size)
    }
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(size)).as_mut_ptr()
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_: u32, _: usize) -> bool {
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(_: u32, _: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_configure(_: u32, size: usize) -> bool {
    let (mut data, mut len) = (null_mut(), 0usize);
    let config = unsafe {
        proxy_get_buffer_bytes(7, 0, size, &mut data, &mut len);
        take(data, len)
    };
    let mut counts = [0u32; 6];
    for part in String::from_utf8_lossy(&config).split_whitespace() {
        if let Some((name, n)) = part.split_once('=') {
            if let Some(i) = NAMES.iter().position(|known| *known == name) {
                counts[i] = n.parse().unwrap_or(0);
            }
        }
    }
    COUNTS.with(|c| c.set(counts));
    let mut id = 0;
    unsafe { proxy_define_metric(0, b"probe.calls".as_ptr(), 11, &mut id) };
    METRIC.with(|m| m.set(id));
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_: u32, _: usize, _: bool) -> u32 {
    let [pairs, value, time, metric, remove, add] = COUNTS.with(Cell::get);
    let id = METRIC.with(Cell::get);
    unsafe {
        for _ in 0..pairs {
            let (mut data, mut size) = (null_mut(), 0usize);
            proxy_get_header_map_pairs(0, &mut data, &mut size);
            drop(take(data, size));
        }
        for _ in 0..value {
            let (mut data, mut size) = (null_mut(), 0usize);
            proxy_get_header_map_value(0, b"x-auth-token".as_ptr(), 12, &mut data, &mut size);
            drop(take(data, size));
        }
        for _ in 0..time {
            let mut nanos = 0u64;
            proxy_get_current_time_nanoseconds(&mut nanos);
        }
        for _ in 0..metric {
            proxy_increment_metric(id, 1);
        }
        for _ in 0..remove {
            proxy_remove_header_map_value(0, b"x-probe-absent".as_ptr(), 14);
        }
        for _ in 0..add {
            proxy_add_header_map_value(0, b"x-probe".as_ptr(), 7, b"1".as_ptr(), 1);
        }
    }
    0
}
