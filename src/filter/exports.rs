//! The proxy-wasm ABI 0.2.1 entry points Envoy calls, and the VM's table of filter instances.
//!
//! Envoy calls an entry point only if the module exports it, and every call into the VM has a
//! fixed cost (about 1 µs of Envoy's CPU each on the bench machine, see BENCHMARKS.md). So
//! tokengate exports only what it uses: per request that is `proxy_on_context_create` (which
//! tells the stream's filter instance) and `proxy_on_request_headers` (Envoy's `decodeHeaders`
//! makes both calls, one after the other), plus `proxy_on_memory_allocate`, through which the
//! host hands over what the filter reads. No response, log, done or delete callbacks: a request
//! keeps no state in the VM unless it is paused for keys, and a paused request is bounded by the
//! gate's deadline and forgotten at a tick once its stream is gone. A filter instance whose
//! configuration Envoy dropped is found and freed when the next instance is created, and at
//! least every [`COLLECT_EVERY_MS`] at a tick (see [`collect`]).
//!
//! Nothing here panics on the host's input: an unknown context id is logged and answered
//! (requests: denied), never unwrapped.

use super::abi::{self, Level};
use super::Root;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// proxy_on_request_headers results (proxy-wasm `Action`).
const CONTINUE: u32 = 0;
const PAUSE: u32 = 1;

/// Most filter instances a VM keeps; a configuration beyond this is refused (Envoy logs it).
const MAX_ROOTS: usize = 256;
/// Streams announced but not yet at their request headers that the VM remembers. Usually one:
/// Envoy announces a stream right before its headers. Several when requests resumed after a key
/// fetch run through a second tokengate filter in their chain: their announcements nest (see
/// [`crate::gate::MAX_RESOLVED_PER_CALL`], which bounds how deep).
const ANNOUNCED_SLOTS: usize = 128;
/// How often, at the least, a tick looks for deleted filter instances.
pub const COLLECT_EVERY_MS: u64 = 5_000;

thread_local! {
    /// The VM's filter instances (root contexts), by context id. A Wasm VM is single-threaded.
    static ROOTS: RefCell<Vec<(u32, Rc<RefCell<Root>>)>> = const { RefCell::new(Vec::new()) };
    /// (stream context, its root) as Envoy announced them, at slot `stream % ANNOUNCED_SLOTS`
    /// (context ids are given out in order), until the stream's request headers take it.
    static ANNOUNCED: RefCell<[(u32, u32); ANNOUNCED_SLOTS]> = const { RefCell::new([(0, 0); ANNOUNCED_SLOTS]) };
    /// When a tick last looked for deleted filter instances.
    static COLLECTED_AT_MS: Cell<u64> = const { Cell::new(0) };
}

/// Runs the module's static constructors (WASI reactor start; Envoy calls it once).
#[no_mangle]
pub extern "C" fn _initialize() {
    extern "C" {
        fn __wasm_call_ctors();
    }
    // SAFETY: called once by the host before any other export, as WASI reactors require.
    unsafe { __wasm_call_ctors() };
    std::panic::set_hook(Box::new(|info| abi::log(Level::Critical, &format!("tokengate panicked: {info}"))));
}

/// Tells the host which ABI this module speaks.
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Memory the host fills in for the filter (header maps, buffers, shared data, call results).
/// The filter takes ownership with `Vec::from_raw_parts(ptr, size, size)`.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut buffer = std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(size));
    buffer.as_mut_ptr()
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_context_id: u32, _vm_configuration_size: usize) -> bool {
    true
}

/// A new context: a filter instance (`parent == 0`) or a stream of one.
#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, parent: u32) {
    if parent != 0 {
        ANNOUNCED.with(|slots| {
            if let Ok(mut slots) = slots.try_borrow_mut() {
                if let Some(slot) = slots.get_mut(context_id as usize % ANNOUNCED_SLOTS) {
                    *slot = (context_id, parent);
                }
            }
        });
        return;
    }
    // A configuration change creates a new instance; the one it replaces is deleted when its
    // last requests end, so looking here frees every earlier replacement.
    collect(context_id);
    let added = ROOTS.with(|roots| {
        let Ok(mut roots) = roots.try_borrow_mut() else { return false };
        if roots.len() >= MAX_ROOTS {
            return false;
        }
        roots.push((context_id, Rc::new(RefCell::new(Root::new(context_id)))));
        true
    });
    if !added {
        abi::log(Level::Error, &format!("#{context_id} refused: this VM already has {MAX_ROOTS} filter instances"));
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(root_context_id: u32, configuration_size: usize) -> bool {
    let Some(root) = root(root_context_id) else {
        abi::log(Level::Error, &format!("#{root_context_id} cannot be configured: no such filter instance"));
        return false;
    };
    let Ok(mut root) = root.try_borrow_mut() else { return false };
    root.on_configure(configuration_size)
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(root_context_id: u32) {
    let now = abi::now_ms();
    if now.saturating_sub(COLLECTED_AT_MS.with(Cell::get)) >= COLLECT_EVERY_MS {
        COLLECTED_AT_MS.with(|at| at.set(now));
        collect(root_context_id);
    }
    if let Some(root) = root(root_context_id) {
        Root::on_tick(&root);
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    root_context_id: u32,
    token: u32,
    num_headers: usize,
    body_size: usize,
    _num_trailers: usize,
) {
    if let Some(root) = root(root_context_id) {
        Root::on_http_call_response(&root, token, num_headers, body_size);
    }
}

/// A request's headers: allow (continue), deny (local reply) or pause until keys arrive.
#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context_id: u32, _num_headers: usize, _end_of_stream: bool) -> u32 {
    let root = match announced_root(context_id) {
        Some(parent) => root(parent),
        None => only_root(),
    };
    let paused = match root {
        Some(root) => Root::on_request_headers(&root, context_id),
        None => {
            // A host that does not announce streams before their headers, with several filter
            // instances in this VM: which configuration applies is unknown, so fail closed.
            abi::log(Level::Warn, &format!("#{context_id} refused: its filter instance is unknown"));
            super::refuse_unattributed();
            true
        }
    };
    if paused {
        PAUSE
    } else {
        CONTINUE
    }
}

/// The root Envoy announced for this stream, taken from its slot.
fn announced_root(context_id: u32) -> Option<u32> {
    ANNOUNCED.with(|slots| {
        let mut slots = slots.try_borrow_mut().ok()?;
        let slot = slots.get_mut(context_id as usize % ANNOUNCED_SLOTS)?;
        if slot.0 != context_id {
            return None;
        }
        let (_, parent) = std::mem::take(slot);
        Some(parent)
    })
}

fn root(context_id: u32) -> Option<Rc<RefCell<Root>>> {
    ROOTS.with(|roots| {
        let roots = roots.try_borrow().ok()?;
        roots.iter().find(|(id, _)| *id == context_id).map(|(_, root)| Rc::clone(root))
    })
}

fn only_root() -> Option<Rc<RefCell<Root>>> {
    ROOTS.with(|roots| match roots.try_borrow().ok()?.as_slice() {
        [(_, root)] => Some(Rc::clone(root)),
        _ => None,
    })
}

/// Frees the filter instances Envoy has deleted (their configuration was replaced or
/// removed). Without `proxy_on_delete` the VM is not told, so it asks: the host refuses to
/// make a deleted context the effective one. `current` is the context of this callback, made
/// effective again afterwards.
fn collect(current: u32) {
    let ids: Vec<u32> = ROOTS.with(|roots| {
        roots
            .try_borrow()
            .map(|r| r.iter().map(|(id, _)| *id).filter(|id| *id != current).collect())
            .unwrap_or_default()
    });
    if ids.is_empty() {
        return;
    }
    let gone: Vec<u32> = ids.into_iter().filter(|id| abi::set_effective_context(*id).is_err()).collect();
    let _ = abi::set_effective_context(current);
    if gone.is_empty() {
        return;
    }
    ROOTS.with(|roots| {
        if let Ok(mut roots) = roots.try_borrow_mut() {
            roots.retain(|(id, _)| !gone.contains(id));
        }
    });
    abi::log(Level::Info, &format!("#{current} freed {} deleted filter instance(s)", gone.len()));
}
