//! The proxy-wasm host calls the filter makes, as functions that return errors instead of
//! panicking. (The SDK's wrappers panic on any status they do not expect, and a panic traps the
//! VM with all of the worker's traffic.) Statuses are read as plain integers, never as an enum
//! a host could put an unknown value into.

use std::ptr::{null, null_mut};

/// A host call's non-OK status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStatus(pub u32);

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const CAS_MISMATCH: u32 = 8;

/// The statuses a host gives for a foreign function it lacks (NotFound), forbids (Envoy:
/// InternalFailure) or does not implement (Unimplemented).
pub const FOREIGN_FUNCTION_UNAVAILABLE: [HostStatus; 3] = [HostStatus(NOT_FOUND), HostStatus(10), HostStatus(12)];

/// proxy-wasm map types.
pub const REQUEST_HEADERS: u32 = 0;
pub const CALL_RESPONSE_HEADERS: u32 = 6;
/// proxy-wasm buffer types.
pub const CALL_RESPONSE_BODY: u32 = 4;
pub const PLUGIN_CONFIGURATION: u32 = 7;
/// proxy-wasm stream type of the request side.
const STREAM_REQUEST: u32 = 0;
/// proxy-wasm metric type.
const METRIC_COUNTER: u32 = 0;

/// Log levels.
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum Level {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_log_level(level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(kind: u32, start: usize, max: usize, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_get_header_map_pairs(kind: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        kind: u32,
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        kind: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(kind: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(key: *const u8, key_size: usize, value: *const u8, value_size: usize, cas: u32) -> u32;
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_continue_stream(stream: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_http_call(
        upstream: *const u8,
        upstream_size: usize,
        headers: *const u8,
        headers_size: usize,
        body: *const u8,
        body_size: usize,
        trailers: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        token: *mut u32,
    ) -> u32;
    fn proxy_call_foreign_function(
        name: *const u8,
        name_size: usize,
        arguments: *const u8,
        arguments_size: usize,
        results: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
}

fn check(status: u32) -> Result<(), HostStatus> {
    if status == OK {
        Ok(())
    } else {
        Err(HostStatus(status))
    }
}

/// Takes ownership of a buffer the host allocated through `proxy_on_memory_allocate`.
unsafe fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        Vec::from_raw_parts(data, size, size)
    }
}

/// Writes a log line.
pub fn log(level: Level, message: &str) {
    // Nothing useful can be done if logging itself fails.
    let _ = unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) };
}

/// Whether the proxy writes log lines of this level (so a line it would drop is not even built).
/// If the host does not say, every level is written.
pub fn enabled(level: Level) -> bool {
    let mut threshold = 0u32;
    match unsafe { proxy_get_log_level(&mut threshold) } {
        OK => level as u32 >= threshold,
        _ => true,
    }
}

/// The proxy's wall clock in milliseconds since the Unix epoch (0 if the host refuses).
pub fn now_ms() -> u64 {
    let mut nanos = 0u64;
    match unsafe { proxy_get_current_time_nanoseconds(&mut nanos) } {
        OK => nanos / 1_000_000,
        _ => 0,
    }
}

/// Sets the root context's tick period.
pub fn set_tick_period_ms(period: u32) -> Result<(), HostStatus> {
    check(unsafe { proxy_set_tick_period_milliseconds(period) })
}

/// Reads up to `max` bytes of a buffer.
pub fn buffer(kind: u32, max: usize) -> Result<Vec<u8>, HostStatus> {
    let (mut data, mut size) = (null_mut(), 0usize);
    match unsafe { proxy_get_buffer_bytes(kind, 0, max, &mut data, &mut size) } {
        OK => Ok(unsafe { owned(data, size) }),
        NOT_FOUND => Ok(Vec::new()),
        status => Err(HostStatus(status)),
    }
}

/// A whole header map in the proxy-wasm map encoding (decode with [`crate::host::decode_map`]).
pub fn header_map(kind: u32) -> Result<Vec<u8>, HostStatus> {
    let (mut data, mut size) = (null_mut(), 0usize);
    check(unsafe { proxy_get_header_map_pairs(kind, &mut data, &mut size) })?;
    Ok(unsafe { owned(data, size) })
}

/// One header's value (the first, if repeated).
pub fn header_value(kind: u32, name: &str) -> Result<Option<Vec<u8>>, HostStatus> {
    let (mut data, mut size) = (null_mut(), 0usize);
    match unsafe { proxy_get_header_map_value(kind, name.as_ptr(), name.len(), &mut data, &mut size) } {
        OK => Ok(Some(unsafe { owned(data, size) })),
        NOT_FOUND => Ok(None),
        status => Err(HostStatus(status)),
    }
}

/// Adds a request header.
pub fn add_request_header(name: &str, value: &str) -> Result<(), HostStatus> {
    check(unsafe {
        proxy_add_header_map_value(REQUEST_HEADERS, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

/// Removes every request header with this name.
pub fn remove_request_header(name: &[u8]) -> Result<(), HostStatus> {
    check(unsafe { proxy_remove_header_map_value(REQUEST_HEADERS, name.as_ptr(), name.len()) })
}

/// Shared data: the value and its CAS token.
pub fn shared_get(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostStatus> {
    let (mut data, mut size, mut cas) = (null_mut(), 0usize, 0u32);
    match unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) } {
        OK => Ok((Some(unsafe { owned(data, size) }), Some(cas).filter(|c| *c != 0))),
        NOT_FOUND => Ok((None, None)),
        status => Err(HostStatus(status)),
    }
}

/// Writes shared data, with compare-and-swap when `cas` is given.
pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
    match unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas.unwrap_or(0)) } {
        OK => SharedWrite::Done,
        CAS_MISMATCH => SharedWrite::CasMismatch,
        _ => SharedWrite::Failed,
    }
}

/// The result of a shared-data write.
pub enum SharedWrite {
    Done,
    CasMismatch,
    Failed,
}

/// Sends a local reply on the current stream.
pub fn send_local_response(status: u32, headers: &[(&str, &str)], body: &str) -> Result<(), HostStatus> {
    let map = crate::host::encode_map(headers);
    check(unsafe {
        proxy_send_local_response(status, null(), 0, body.as_ptr(), body.len(), map.as_ptr(), map.len(), -1)
    })
}

/// Lets the current paused request continue.
pub fn continue_request() -> Result<(), HostStatus> {
    check(unsafe { proxy_continue_stream(STREAM_REQUEST) })
}

/// Makes `context_id` the stream later calls act on.
pub fn set_effective_context(context_id: u32) -> Result<(), HostStatus> {
    check(unsafe { proxy_set_effective_context(context_id) })
}

/// Defines a counter and returns its id.
pub fn define_counter(name: &str) -> Result<u32, HostStatus> {
    let mut id = 0u32;
    check(unsafe { proxy_define_metric(METRIC_COUNTER, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

/// Starts an HTTP call to `cluster` with `headers` (proxy-wasm map encoding), no body; the
/// answer comes to the root's `proxy_on_http_call_response` with the returned token.
pub fn http_call(cluster: &str, headers: &[u8], timeout_ms: u32) -> Result<u32, HostStatus> {
    let mut token = 0u32;
    check(unsafe {
        proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            headers.as_ptr(),
            headers.len(),
            null(),
            0,
            null(),
            0,
            timeout_ms,
            &mut token,
        )
    })?;
    Ok(token)
}

/// Calls a host foreign function; the host's status comes back as a plain integer.
pub fn call_foreign_function(name: &str, arguments: &[u8]) -> Result<Vec<u8>, HostStatus> {
    let (mut data, mut size) = (null_mut(), 0usize);
    let status = unsafe {
        proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            arguments.as_ptr(),
            arguments.len(),
            &mut data,
            &mut size,
        )
    };
    // Whatever the status, a buffer the host allocated is ours to free.
    let results = unsafe { owned(data, size) };
    check(status).map(|()| results)
}

/// Adds one to a counter.
pub fn increment(id: u32) {
    let _ = unsafe { proxy_increment_metric(id, 1) };
}
