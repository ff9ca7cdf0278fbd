//! The proxy-wasm glue (wasm32 only): host events in, core calls, host actions out.
//!
//! One [`Root`] per filter instance per worker VM owns the [`Gate`]; each request gets a
//! [`Request`] sharing it. Root contexts fetch the key set (when the gate says so), tick, and
//! resume or refuse paused requests; request contexts read headers and act on the gate's answer.

mod abi;

use crate::config::{self, FilterConfig, KeySource, RemoteJwks};
use crate::deny::Denial;
use crate::gate::{self, Gate, Outcome, Resolved};
use crate::host::{decode_map, GetError, SetError, SharedData};
use crate::hostcrypto::{self, SignatureHost};
use crate::jwks::MAX_JWKS_BYTES;
use crate::keycache::{FetchResult, Fetched, SyncResult};
use crate::metrics::Counter;
use crate::verify::VerifiedClaims;
use abi::Level;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

proxy_wasm::main! {{
    // Installs the SDK's panic hook, which logs the panic at critical level before the VM dies.
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| Box::new(Root::new(context_id)));
}}

/// Tick period while requests wait or the first keys are still to come.
const FAST_TICK_MS: u32 = 20;
/// Tick period otherwise: enough to notice refreshes due and key sets fetched elsewhere.
const SLOW_TICK_MS: u32 = 500;

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

/// Counter ids, defined once per VM.
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

/// What the root and its request contexts share.
struct Worker {
    gate: Gate,
    header: String,
    forward_token: bool,
    metrics: Metrics,
}

impl Worker {
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
        abi::log(Level::Debug, &format!("#{context_id} denied: {}", denial.code()));
        self.metrics.count(Counter::Denied(denial));
        if let Err(status) = abi::send_local_response(denial.status(), &denial.headers(), &denial.body()) {
            abi::log(Level::Warn, &format!("#{context_id} local reply failed (status {})", status.0));
        }
    }
}

/// One filter instance on one worker.
struct Root {
    context_id: u32,
    worker: Option<Rc<RefCell<Worker>>>,
    remote: Option<RemoteJwks>,
    fetch_token: Option<u32>,
    tick_ms: u32,
}

impl Root {
    fn new(context_id: u32) -> Root {
        Root { context_id, worker: None, remote: None, fetch_token: None, tick_ms: 0 }
    }

    fn log(&self, level: Level, message: &str) {
        abi::log(level, &format!("#{} {message}", self.context_id));
    }

    fn start_fetch(&mut self, worker: &mut Worker, now_ms: u64) -> Vec<Resolved> {
        let Some(remote) = &self.remote else {
            return Vec::new();
        };
        let etag = worker.gate.cache().fetch_etag().map(str::to_owned);
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
        let timeout = Duration::from_millis(remote.timeout_ms);
        match proxy_wasm::hostcalls::dispatch_http_call(&remote.cluster, headers, None, vec![], timeout) {
            Ok(token) => {
                self.fetch_token = Some(token);
                Vec::new()
            }
            Err(status) => {
                let reason = format!("could not start the fetch from cluster `{}` (status {status:?})", remote.cluster);
                let (result, resolved) = worker.gate.on_fetch_done(&HostSharedData, now_ms, Err(reason));
                self.report_fetch(worker, &result);
                resolved
            }
        }
    }

    fn report_fetch(&self, worker: &Worker, result: &FetchResult) {
        match result {
            FetchResult::Stored { changed, keys, skipped } => {
                worker.metrics.count(Counter::FetchOk);
                if *changed {
                    worker.metrics.count(Counter::KeySetChanged);
                    worker.metrics.count_n(Counter::KeysSkipped, skipped.len());
                    self.log(Level::Info, &format!("key set loaded: {keys} usable keys, {} skipped", skipped.len()));
                    for skip in skipped {
                        let kid = skip.kid.as_deref().unwrap_or("(none)");
                        self.log(Level::Info, &format!("skipped key #{} kid {kid}: {}", skip.index, skip.reason));
                    }
                }
            }
            FetchResult::Failed { reason } => {
                worker.metrics.count(Counter::FetchFailed);
                let kept = match worker.gate.cache().keys() {
                    Some(keys) => format!("keeping the last good key set ({} keys)", keys.len()),
                    None => "no key set yet: requests are denied with keys_unavailable".to_owned(),
                };
                self.log(Level::Warn, &format!("key set fetch failed: {reason}; {kept}"));
            }
        }
    }

    fn adjust_tick(&mut self, worker: &Worker) {
        let wanted = if worker.gate.cache().is_local() {
            0
        } else if worker.gate.wants_fast_ticks() {
            FAST_TICK_MS
        } else {
            SLOW_TICK_MS
        };
        if wanted != self.tick_ms && abi::set_tick_period_ms(wanted).is_ok() {
            self.tick_ms = wanted;
        }
    }

    /// Finishes paused requests. Runs with no borrow of the worker held: a local reply can make
    /// the host call back into this VM.
    fn finish(&self, resolved: Vec<Resolved>) {
        let Some(worker) = &self.worker else { return };
        for Resolved { context_id, result } in resolved {
            if abi::set_effective_context(context_id).is_err() {
                continue; // The request is gone.
            }
            let Ok(worker) = worker.try_borrow() else {
                continue;
            };
            match result {
                Ok(claims) => match worker.allow(&claims) {
                    Ok(()) => {
                        if abi::continue_request().is_err() {
                            self.log(Level::Debug, &format!("#{context_id} could not be resumed"));
                        }
                    }
                    Err(_) => worker.deny(context_id, Denial::InternalError),
                },
                Err(denial) => worker.deny(context_id, denial),
            }
        }
        let _ = abi::set_effective_context(self.context_id);
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _trailers: usize) {
        if self.fetch_token != Some(token_id) {
            return;
        }
        self.fetch_token = None;
        let Some(shared) = self.worker.clone() else {
            return;
        };
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
        let resolved = {
            let Ok(mut worker) = shared.try_borrow_mut() else {
                return;
            };
            let (result, resolved) = worker.gate.on_fetch_done(&HostSharedData, abi::now_ms(), fetched);
            self.report_fetch(&worker, &result);
            self.adjust_tick(&worker);
            resolved
        };
        self.finish(resolved);
    }
}

impl RootContext for Root {
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
        self.remote = match &config.keys {
            KeySource::Remote(remote) => Some(remote.clone()),
            KeySource::Local(_) => None,
        };
        let mut gate = Gate::new(&config).with_signature_host(Box::new(EnvoyCrypto::new()));
        gate.start(&HostSharedData);
        let worker = Worker {
            gate,
            header: config.header.clone(),
            forward_token: config.forward_token,
            metrics: Metrics::define(),
        };
        self.adjust_tick(&worker);
        self.worker = Some(Rc::new(RefCell::new(worker)));
        true
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.worker.clone() else {
            return;
        };
        let resolved = {
            let Ok(mut worker) = shared.try_borrow_mut() else {
                return;
            };
            let now = abi::now_ms();
            let tick = worker.gate.on_tick(&HostSharedData, now);
            match &tick.synced {
                SyncResult::Loaded { keys } => self.log(Level::Debug, &format!("picked up a new key set: {keys} keys")),
                SyncResult::Unreadable(why) => {
                    self.log(Level::Debug, &format!("shared key set not readable yet: {why}"))
                }
                SyncResult::Unchanged => {}
            }
            let mut resolved = tick.resolved;
            if tick.fetch && self.fetch_token.is_none() {
                resolved.extend(self.start_fetch(&mut worker, now));
            }
            self.adjust_tick(&worker);
            resolved
        };
        self.finish(resolved);
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let worker = self.worker.clone()?;
        Some(Box::new(Request { context_id, root_id: self.context_id, worker, paused: false }))
    }
}

/// One request.
struct Request {
    context_id: u32,
    root_id: u32,
    worker: Rc<RefCell<Worker>>,
    paused: bool,
}

impl Context for Request {
    fn on_done(&mut self) -> bool {
        if self.paused {
            if let Ok(mut worker) = self.worker.try_borrow_mut() {
                worker.gate.forget(self.context_id);
            }
        }
        true
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Ok(mut worker) = self.worker.try_borrow_mut() else {
            return Action::Pause;
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
        let values: Vec<&[u8]> =
            pairs.iter().filter(|(name, _)| *name == worker.header.as_bytes()).map(|(_, v)| *v).collect();
        let outcome = worker.gate.on_request(&HostSharedData, self.context_id, &values, abi::now_ms());
        match outcome {
            Outcome::Allow(claims) => match worker.allow(&claims) {
                Ok(()) => Action::Continue,
                Err(_) => {
                    worker.deny(self.context_id, Denial::InternalError);
                    Action::Pause
                }
            },
            Outcome::Deny(denial) => {
                worker.deny(self.context_id, denial);
                Action::Pause
            }
            Outcome::Paused => {
                self.paused = true;
                worker.metrics.count(Counter::WaitedForKeys);
                abi::log(Level::Debug, &format!("#{} waiting for keys (root #{})", self.context_id, self.root_id));
                Action::Pause
            }
        }
    }
}
