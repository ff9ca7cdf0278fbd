//! The proxy-wasm glue (wasm32 only): host events in, core calls, host actions out.
//!
//! [`exports`] holds the ABI entry points and the VM's filter instances; each instance is a
//! [`Root`] that owns its [`Gate`]. A request carries no state of its own: its headers are
//! decided at once, or it is paused in the gate until keys arrive and then finished by its
//! root's tick or key-fetch callback.

mod abi;
mod exports;

use crate::config::{self, FilterConfig, KeySource, RemoteJwks};
use crate::deny::Denial;
use crate::gate::{self, Gate, Outcome, Resolved};
use crate::host::{decode_map, encode_map, GetError, SetError, SharedData};
use crate::hostcrypto::{self, SignatureHost};
use crate::jwks::MAX_JWKS_BYTES;
use crate::keycache::{FetchResult, Fetched, SyncResult};
use crate::metrics::Counter;
use crate::verify::VerifiedClaims;
use abi::Level;
use std::cell::{Cell, RefCell};

/// Tick period while requests wait or the first keys are still to come.
const FAST_TICK_MS: u32 = 20;
/// Tick period otherwise: enough to notice refreshes due and key sets fetched elsewhere.
const SLOW_TICK_MS: u32 = 500;
/// Tick period of an instance with local keys: only housekeeping (deleted instances).
const HOUSEKEEPING_TICK_MS: u32 = exports::COLLECT_EVERY_MS as u32;

/// Envoy's shared data through the host ABI.
struct HostSharedData;

impl SharedData for HostSharedData {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), GetError> {
        abi::shared_get(key).map_err(|_| GetError)
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        match abi::shared_set(key, value, cas) {
            abi::SharedWrite::Done => Ok(()),
            abi::SharedWrite::CasMismatch => Err(SetError::CasMismatch),
            abi::SharedWrite::Failed => Err(SetError::Host),
        }
    }
}

/// Envoy's BoringSSL through the `verify_signature` foreign function. After the host says the
/// function does not exist or is not allowed (`capability_restriction_config`), this VM stops
/// asking and every signature is checked in Rust.
#[derive(Debug)]
struct EnvoyCrypto {
    unavailable: Cell<bool>,
    by_envoy: Option<u32>,
    envoy_unavailable: Option<u32>,
}

impl EnvoyCrypto {
    fn new() -> EnvoyCrypto {
        EnvoyCrypto {
            unavailable: Cell::new(false),
            by_envoy: abi::define_counter(&Counter::SignatureByEnvoy.name()).ok(),
            envoy_unavailable: abi::define_counter(&Counter::SignatureEnvoyUnavailable.name()).ok(),
        }
    }

    fn ask(&self, hash: &str, spki: &[u8], signature: &[u8], message: &[u8]) -> Option<bool> {
        if self.unavailable.get() {
            return None;
        }
        let arguments = hostcrypto::encode_arguments(hash, spki, signature, message);
        match abi::call_foreign_function(hostcrypto::FUNCTION, &arguments) {
            Ok(results) => hostcrypto::decode_result(&results),
            Err(status) => {
                // NotFound: no such function. InternalFailure: Envoy's answer when
                // `capability_restriction_config` forbids the call. Unimplemented: other hosts.
                // (BadArgument is about this one key or signature: the next call may work.)
                if abi::FOREIGN_FUNCTION_UNAVAILABLE.contains(&status) {
                    self.unavailable.set(true);
                    abi::log(
                        Level::Info,
                        &format!("host signature checks unavailable (status {}): verifying RS*/ES* in Wasm", status.0),
                    );
                }
                None
            }
        }
    }
}

impl SignatureHost for EnvoyCrypto {
    fn verify(&self, hash: &str, spki: &[u8], signature: &[u8], message: &[u8]) -> Option<bool> {
        let answer = self.ask(hash, spki, signature, message);
        let counter = if answer.is_some() { self.by_envoy } else { self.envoy_unavailable };
        if let Some(id) = counter {
            abi::increment(id);
        }
        answer
    }
}

/// Counter ids, defined once per filter instance.
struct Metrics {
    ids: Vec<Option<u32>>,
}

impl Metrics {
    fn define() -> Metrics {
        Metrics { ids: Counter::all().into_iter().map(|c| abi::define_counter(&c.name()).ok()).collect() }
    }
    fn count(&self, counter: Counter) {
        if let Some(Some(id)) = self.ids.get(counter.index()) {
            abi::increment(*id);
        }
    }
    fn count_n(&self, counter: Counter, n: usize) {
        for _ in 0..n {
            self.count(counter);
        }
    }
}

/// A configured filter instance's parts.
struct Configured {
    gate: Gate,
    header: String,
    forward_token: bool,
    metrics: Metrics,
    remote: Option<RemoteJwks>,
}

impl Configured {
    /// Applies an allow to the current stream: strip the token unless forwarded, add facts.
    fn allow(&self, claims: &VerifiedClaims) -> Result<(), abi::HostStatus> {
        if !self.forward_token {
            abi::remove_request_header(self.header.as_bytes())?;
        }
        for (name, value) in gate::upstream_headers(claims) {
            abi::add_request_header(name, value)?;
        }
        self.metrics.count(Counter::Allowed);
        Ok(())
    }

    /// Refuses the current stream with the denial's local reply.
    fn deny(&self, context_id: u32, denial: Denial) {
        self.metrics.count(Counter::Denied(denial));
        reply(context_id, denial);
    }
}

/// Sends the denial's local reply on the current stream (and a debug line with its reason).
fn reply(context_id: u32, denial: Denial) {
    if abi::enabled(Level::Debug) {
        abi::log(Level::Debug, &format!("#{context_id} denied: {}", denial.code()));
    }
    if let Err(status) = abi::send_local_response(denial.status(), &denial.headers(), &denial.body()) {
        abi::log(Level::Warn, &format!("#{context_id} local reply failed (status {})", status.0));
    }
}

/// Refuses the current stream when no filter instance can take it (fail closed).
fn refuse_unattributed() {
    let denial = Denial::InternalError;
    let _ = abi::send_local_response(denial.status(), &denial.headers(), &denial.body());
}

/// One filter instance (root context) in this VM: its configuration, gate and key fetches.
pub(crate) struct Root {
    context_id: u32,
    configured: Option<Configured>,
    fetch_token: Option<u32>,
    tick_ms: u32,
}

impl Root {
    fn new(context_id: u32) -> Root {
        Root { context_id, configured: None, fetch_token: None, tick_ms: 0 }
    }

    fn log(&self, level: Level, message: &str) {
        if abi::enabled(level) {
            abi::log(level, &format!("#{} {message}", self.context_id));
        }
    }

    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = match abi::buffer(abi::PLUGIN_CONFIGURATION, size) {
            Ok(bytes) => bytes,
            Err(status) => {
                self.log(Level::Error, &format!("cannot read the plugin configuration (status {})", status.0));
                return false;
            }
        };
        let config: FilterConfig = match config::parse(&bytes) {
            Ok(config) => config,
            Err(e) => {
                self.log(Level::Error, &format!("invalid configuration: {e}"));
                return false;
            }
        };
        self.log(Level::Info, &format!("configured: {}", config.summary()));
        let mut gate = Gate::new(&config).with_signature_host(Box::new(EnvoyCrypto::new()));
        gate.start(&HostSharedData);
        let configured = Configured {
            gate,
            header: config.header.clone(),
            forward_token: config.forward_token,
            metrics: Metrics::define(),
            remote: match &config.keys {
                KeySource::Remote(remote) => Some(remote.clone()),
                KeySource::Local(_) => None,
            },
        };
        self.configured = Some(configured);
        self.refresh_tick();
        true
    }

    /// Decides a request; true when it is paused (or answered) and must not continue now.
    fn on_request_headers(root: &RefCell<Root>, context_id: u32) -> bool {
        let Ok(mut root) = root.try_borrow_mut() else {
            refuse_unattributed();
            return true;
        };
        let root_id = root.context_id;
        let Some(configured) = root.configured.as_mut() else {
            refuse_unattributed();
            return true;
        };
        // One host call for the whole map, decoded in place: an unreadable map is an empty one
        // (no token: denied).
        let map = abi::header_map(abi::REQUEST_HEADERS).unwrap_or_default();
        let pairs = decode_map(&map).unwrap_or_default();
        // Headers under tokengate's prefix only ever come from tokengate.
        for (i, (name, _)) in pairs.iter().enumerate() {
            if config::is_reserved_header(name) && !pairs.iter().take(i).any(|(earlier, _)| earlier == name) {
                let _ = abi::remove_request_header(name);
            }
        }
        let header = configured.header.as_bytes();
        let values: Vec<&[u8]> = pairs.iter().filter(|(name, _)| *name == header).map(|(_, v)| *v).collect();
        match configured.gate.on_request(&HostSharedData, context_id, &values, abi::now_ms()) {
            Outcome::Allow(claims) => match configured.allow(&claims) {
                Ok(()) => false,
                Err(_) => {
                    configured.deny(context_id, Denial::InternalError);
                    true
                }
            },
            Outcome::Deny(denial) => {
                configured.deny(context_id, denial);
                true
            }
            Outcome::Paused => {
                configured.metrics.count(Counter::WaitedForKeys);
                if abi::enabled(Level::Debug) {
                    abi::log(Level::Debug, &format!("#{context_id} waiting for keys (root #{root_id})"));
                }
                // Tick often until the wait is over.
                root.refresh_tick();
                true
            }
        }
    }

    fn on_tick(root: &RefCell<Root>) {
        let resolved = {
            let Ok(mut root) = root.try_borrow_mut() else { return };
            let root = &mut *root;
            let now = abi::now_ms();
            let root_id = root.context_id;
            let Some(configured) = root.configured.as_mut() else { return };
            if configured.gate.paused() > 0 {
                // A stream that is gone (its client left) cannot be made the effective context.
                configured.gate.forget_gone(|id| abi::set_effective_context(id).is_ok());
                let _ = abi::set_effective_context(root_id);
            }
            let tick = configured.gate.on_tick(&HostSharedData, now);
            let mut resolved = tick.resolved;
            let fetch = tick.fetch && root.fetch_token.is_none();
            match &tick.synced {
                SyncResult::Loaded { keys } => root.log(Level::Debug, &format!("picked up a new key set: {keys} keys")),
                SyncResult::Unreadable(why) => {
                    root.log(Level::Debug, &format!("shared key set not readable yet: {why}"))
                }
                SyncResult::Unchanged => {}
            }
            if fetch {
                resolved.extend(root.start_fetch(now));
            }
            root.refresh_tick();
            resolved
        };
        finish(root, resolved);
    }

    fn on_http_call_response(root: &RefCell<Root>, token: u32, num_headers: usize, body_size: usize) {
        let resolved = {
            let Ok(mut root) = root.try_borrow_mut() else { return };
            if root.fetch_token != Some(token) {
                return;
            }
            root.fetch_token = None;
            // Ok(None): 304, the stored key set is current. The ETag goes with either answer.
            let etag = abi::header_value(abi::CALL_RESPONSE_HEADERS, "etag").ok().flatten();
            let outcome = if num_headers == 0 {
                Err("no response (connection failure or timeout)".to_owned())
            } else {
                let status = abi::header_value(abi::CALL_RESPONSE_HEADERS, ":status").ok().flatten();
                match status.as_deref() {
                    Some(b"200") if body_size > MAX_JWKS_BYTES => {
                        Err(format!("body of {body_size} bytes is over the {MAX_JWKS_BYTES}-byte limit"))
                    }
                    Some(b"200") => abi::buffer(abi::CALL_RESPONSE_BODY, body_size)
                        .map(Some)
                        .map_err(|s| format!("body unreadable (status {})", s.0)),
                    Some(b"304") => Ok(None),
                    Some(other) => Err(format!("HTTP status {}", String::from_utf8_lossy(other))),
                    None => Err("response without status".to_owned()),
                }
            };
            let etag = etag.as_deref();
            let fetched = match &outcome {
                Ok(Some(body)) => Ok(Fetched::Document { body, etag }),
                Ok(None) => Ok(Fetched::NotModified { etag }),
                Err(reason) => Err(reason.clone()),
            };
            let Some(configured) = root.configured.as_mut() else { return };
            let (result, resolved) = configured.gate.on_fetch_done(&HostSharedData, abi::now_ms(), fetched);
            root.report_fetch(&result);
            root.refresh_tick();
            resolved
        };
        finish(root, resolved);
    }

    fn start_fetch(&mut self, now_ms: u64) -> Vec<Resolved> {
        let Some(configured) = self.configured.as_mut() else { return Vec::new() };
        let Some(remote) = &configured.remote else { return Vec::new() };
        let etag = configured.gate.cache().fetch_etag().map(str::to_owned);
        let mut headers = vec![
            (":method", "GET"),
            (":path", remote.path.as_str()),
            (":authority", remote.authority.as_str()),
            ("accept", "application/json"),
            ("user-agent", "tokengate"),
        ];
        if let Some(etag) = &etag {
            headers.push(("if-none-match", etag));
        }
        let timeout_ms = u32::try_from(remote.timeout_ms).unwrap_or(u32::MAX);
        match abi::http_call(&remote.cluster, &encode_map(&headers), timeout_ms) {
            Ok(token) => {
                self.fetch_token = Some(token);
                Vec::new()
            }
            Err(status) => {
                let reason =
                    format!("could not start the fetch from cluster `{}` (status {})", remote.cluster, status.0);
                let (result, resolved) = configured.gate.on_fetch_done(&HostSharedData, now_ms, Err(reason));
                self.report_fetch(&result);
                resolved
            }
        }
    }

    fn report_fetch(&self, result: &FetchResult) {
        let Some(configured) = &self.configured else { return };
        let metrics = &configured.metrics;
        match result {
            FetchResult::Stored { changed, keys, skipped } => {
                metrics.count(Counter::FetchOk);
                if *changed {
                    metrics.count(Counter::KeySetChanged);
                    metrics.count_n(Counter::KeysSkipped, skipped.len());
                    self.log(Level::Info, &format!("key set loaded: {keys} usable keys, {} skipped", skipped.len()));
                    for skip in skipped {
                        let kid = skip.kid.as_deref().unwrap_or("(none)");
                        self.log(Level::Info, &format!("skipped key #{} kid {kid}: {}", skip.index, skip.reason));
                    }
                }
            }
            FetchResult::Failed { reason } => {
                metrics.count(Counter::FetchFailed);
                let kept = match configured.gate.cache().keys() {
                    Some(keys) => format!("keeping the last good key set ({} keys)", keys.len()),
                    None => "no key set yet: requests are denied with keys_unavailable".to_owned(),
                };
                self.log(Level::Warn, &format!("key set fetch failed: {reason}; {kept}"));
            }
        }
    }

    /// Remote keys tick fast while requests wait or the first keys are still to come, and slowly
    /// otherwise; local keys tick only for housekeeping.
    fn refresh_tick(&mut self) {
        let wanted = self.configured.as_ref().map_or(0, |c| {
            if c.gate.cache().is_local() {
                HOUSEKEEPING_TICK_MS
            } else if c.gate.wants_fast_ticks() {
                FAST_TICK_MS
            } else {
                SLOW_TICK_MS
            }
        });
        self.set_tick(wanted);
    }

    fn set_tick(&mut self, wanted: u32) {
        if wanted != self.tick_ms && abi::set_tick_period_ms(wanted).is_ok() {
            self.tick_ms = wanted;
        }
    }
}

/// Finishes paused requests. Runs with no borrow of the root held: a local reply or a resumed
/// request can make the host call back into this VM.
fn finish(root: &RefCell<Root>, resolved: Vec<Resolved>) {
    if resolved.is_empty() {
        return;
    }
    let Ok(root_id) = root.try_borrow().map(|r| r.context_id) else { return };
    for Resolved { context_id, result } in resolved {
        if abi::set_effective_context(context_id).is_err() {
            continue; // The request is gone.
        }
        let Ok(root) = root.try_borrow() else { continue };
        let Some(configured) = &root.configured else { continue };
        match result {
            Ok(claims) => match configured.allow(&claims) {
                Ok(()) => {
                    if abi::continue_request().is_err() {
                        root.log(Level::Debug, &format!("#{context_id} could not be resumed"));
                    }
                }
                Err(_) => configured.deny(context_id, Denial::InternalError),
            },
            Err(denial) => configured.deny(context_id, denial),
        }
    }
    let _ = abi::set_effective_context(root_id);
}
