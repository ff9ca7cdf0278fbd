//! Shared fixtures: temp dirs, the server process, HTTP calls, bounded CLI runs, JWKS checks,
//! metrics scrapes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::backend::Backend;

pub const BIN: &str = env!("CARGO_BIN_EXE_tokengate");
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let unique =
            format!("tokengate-it-{name}-{}-{}", std::process::id(), tokengate_cli::token_id::generate().unwrap());
        let path = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `tokengate serve`.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: mpsc::Receiver<String>,
}

impl Server {
    /// Starts the service on a free port with the admin token from the environment.
    pub fn start(backend: &Backend) -> Self {
        Self::start_with(backend, &[], Some(ADMIN_TOKEN))
    }

    pub fn start_with(backend: &Backend, extra: &[&str], env_token: Option<&str>) -> Self {
        Self::spawn(backend, extra, env_token).wait_until_listening()
    }

    /// Starts the process without waiting for it to listen (see [`Server::wait_until_listening`]).
    pub fn spawn(backend: &Backend, extra: &[&str], env_token: Option<&str>) -> Self {
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(backend.serve_args())
            .args(extra)
            .env_remove("TOKENGATE_ADMIN_TOKEN")
            .env_remove("TOKENGATE_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(token) = env_token {
            command.env("TOKENGATE_ADMIN_TOKEN", token);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (lines, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child: Some(child), url: String::new(), log }
    }

    /// Waits (bounded) for the "listening on" line and takes the URL from it.
    pub fn wait_until_listening(mut self) -> Self {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.log.recv_timeout(left) else {
                panic!("no 'listening on' line within {STARTUP_TIMEOUT:?}; the server said: {seen:#?}");
            };
            if let Some(rest) = line.strip_prefix("tokengate: listening on ") {
                self.url = rest.split_whitespace().next().unwrap().to_owned();
                assert!(self.url.starts_with("http://127.0.0.1:"), "{line}");
                return self;
            }
            seen.push(line);
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL: no shutdown, no flush, no goodbye.
    pub fn kill(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap()
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let sent = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server did not stop within {PROCESS_TIMEOUT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the server logged so far.
    pub fn drain_log(&self) -> Vec<String> {
        std::iter::from_fn(|| self.log.recv_timeout(Duration::from_millis(200)).ok()).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A plain HTTP answer.
pub struct Answer {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| panic!("not JSON ({error}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(15))).build(),
    )
}

/// One request; `auth` adds the admin bearer token, `body` is sent as JSON text.
pub fn call(method: &str, url: &str, auth: Option<&str>, headers: &[(&str, &str)], body: Option<&str>) -> Answer {
    try_call(method, url, auth, headers, body).unwrap_or_else(|error| panic!("{method} {url}: {error}"))
}

/// [`call`], with transport failures (no answer at all) returned rather than panicking.
pub fn try_call(
    method: &str,
    url: &str,
    auth: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<Answer, ureq::Error> {
    call_with(&agent(), method, url, auth, headers, body)
}

/// One request through `agent`, which may reuse a kept-alive connection.
pub fn call_with(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    auth: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<Answer, ureq::Error> {
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    if let Some(token) = auth {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = match body {
        Some(body) => {
            let request = request.header("Content-Type", "application/json");
            agent.run(request.body(body.to_owned()).unwrap())
        }
        None => agent.run(request.body(()).unwrap()),
    };
    let mut response = response?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.body_mut().read_to_string()?;
    Ok(Answer { status, headers, body })
}

pub fn admin(method: &str, server: &Server, path: &str, body: Option<Value>) -> Answer {
    let text = body.map(|body| body.to_string());
    call(method, &format!("{}{path}", server.url), Some(ADMIN_TOKEN), &[], text.as_deref())
}

pub fn jwks(server: &Server, namespace: &str) -> Answer {
    call("GET", &format!("{}/v1/namespaces/{namespace}/jwks.json", server.url), None, &[], None)
}

/// `GET /metrics` without credentials: each sample, `name{labels}` -> value.
pub fn scrape_metrics(server: &Server) -> BTreeMap<String, u64> {
    let answer = call("GET", &format!("{}/metrics", server.url), None, &[], None);
    assert_eq!(answer.status, 200, "{}", answer.body);
    parse_metrics(&answer.body)
}

/// The samples of a Prometheus text exposition, `name{labels}` -> value (each must be new).
pub fn parse_metrics(text: &str) -> BTreeMap<String, u64> {
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let value = value.parse().unwrap_or_else(|error| panic!("{error}: {line:?}"));
        assert!(samples.insert(series.to_owned(), value).is_none(), "{series} twice");
    }
    samples
}

pub fn kids(answer: &Answer) -> Vec<String> {
    answer.json()["keys"].as_array().unwrap().iter().map(|key| key["kid"].as_str().unwrap().to_owned()).collect()
}

/// Verifies a token's EdDSA signature with the key the JWKS publishes for its `kid`.
pub fn verify_with_jwks(token: &str, jwks: &Value) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let kid = header["kid"].as_str().unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} not in {jwks}"));
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let public_key = ed25519_compact::PublicKey::from_slice(&x).unwrap();
    let signature = ed25519_compact::Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
    public_key.verify(format!("{}.{}", parts[0], parts[1]), &signature).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

pub fn create_body(namespace: &str, function: Option<&str>) -> Value {
    json!({
        "namespace_id": namespace,
        "function_id": function,
        "description": "integration test",
        "expires_at": "2099-01-01T00:00:00Z",
    })
}

/// Runs a command to completion (stdin from `input` or null) within [`PROCESS_TIMEOUT`].
pub fn run_bounded(mut command: Command, input: Option<&str>) -> Output {
    command.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        use std::io::Write;
        // A command that exits without reading its input (as it may) closes the pipe first.
        if let Err(error) = stdin.write_all(text.as_bytes()) {
            assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe, "{error}");
        }
    }
    let pid = child.id();
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match result.recv_timeout(PROCESS_TIMEOUT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            panic!("command did not finish within {PROCESS_TIMEOUT:?}");
        }
    }
}

pub fn cli(url: &str, args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).env("TOKENGATE_URL", url).env("TOKENGATE_ADMIN_TOKEN", ADMIN_TOKEN);
    run_bounded(command, None)
}

pub fn stdout_json(output: &Output) -> Value {
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| panic!("{error}: {output:?}"))
}
