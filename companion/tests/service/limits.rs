//! The service's bounds over HTTP: the per-namespace key cap (409 `namespace_full`), the
//! `--max-keys-per-namespace` range, and a JWKS flood that must leave the admin API, the JWKS
//! and `/metrics` responsive and the process small.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::backend::{on_each_backend, Backend};
use crate::support::*;

on_each_backend!(a_full_namespace_answers_409, a_jwks_flood_leaves_the_service_responsive);

fn a_full_namespace_answers_409(backend: Backend) {
    let server = Server::start_with(&backend, &["--max-keys-per-namespace", "2"], Some(ADMIN_TOKEN));
    let first = admin("POST", &server, "/v1/tokens", Some(create_body("small", Some("cart"))));
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(admin("POST", &server, "/v1/tokens", Some(create_body("small", None))).status, 201);

    let refused = admin("POST", &server, "/v1/tokens", Some(create_body("small", Some("cart"))));
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(refused.header("cache-control"), Some("no-store"));
    let error = refused.json();
    assert_eq!(error["error"], "namespace_full");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("small") && message.contains(" 2 keys"), "{message}");
    assert!(message.contains("--max-keys-per-namespace"), "{message}");
    assert!(!refused.body.contains("\"token\""), "{}", refused.body);
    assert_eq!(kids(&jwks(&server, "small")).len(), 2);
    let listed = admin("GET", &server, "/v1/tokens?namespace_id=small", None).json();
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 2, "the refused create stored nothing");

    // Other namespaces have their own room; the CLI reports the refusal as an API error.
    assert_eq!(admin("POST", &server, "/v1/tokens", Some(create_body("roomy", None))).status, 201);
    let output =
        cli(&server.url, &["token", "create", "--namespace", "small", "--description", "one more", "--no-expiration"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("already publishes 2 keys"), "{output:?}");

    // A deletion makes room at once.
    let id = first.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(admin("DELETE", &server, &format!("/v1/tokens/{id}"), None).status, 204);
    assert_eq!(admin("POST", &server, "/v1/tokens", Some(create_body("small", None))).status, 201);
    assert!(server.stop().success());
}

#[test]
fn max_keys_per_namespace_must_be_in_range() {
    let dir = TempDir::new("max-keys");
    for value in ["0", "25001", "-1", "many"] {
        let mut command = Command::new(BIN);
        command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(&dir.0);
        command.arg(format!("--max-keys-per-namespace={value}"));
        command.env("TOKENGATE_ADMIN_TOKEN", ADMIN_TOKEN).env_remove("TOKENGATE_DATABASE_URL");
        let output = run_bounded(command, None);
        assert_eq!(output.status.code(), Some(2), "{value}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--max-keys-per-namespace"), "{value}: {stderr}");
    }
    let help = run_bounded(
        {
            let mut command = Command::new(BIN);
            command.args(["serve", "--help"]);
            command
        },
        None,
    );
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--max-keys-per-namespace") && help.contains("[default: 10000]"), "{help}");
}

/// How long the flood lasts.
const FLOOD: Duration = Duration::from_secs(3);
/// Flooding threads; the last [`MISSING_FLOODERS`] ask for a new namespace on every connection,
/// so that each of their requests misses the cache.
const FLOODERS: usize = 8;
const MISSING_FLOODERS: usize = 2;
/// Requests written on each flood connection before it is closed unread.
const PIPELINED: usize = 4;
/// Longest acceptable answer to an admin create or a JWKS GET during the flood, on a kept-alive
/// connection (as Envoy fetches keys).
const RESPONSIVE: Duration = Duration::from_secs(2);
/// The same on a new connection: the flood keeps the listen queue full, so the kernel drops
/// some SYNs and the client resends them after 1 s, then 2 s more. No server can answer a
/// connection it has not been given yet; two resends are allowed for.
const RESPONSIVE_NEW_CONNECTION: Duration = Duration::from_secs(4);
/// Most threads the server may have during the flood (it had 515 before its bounds).
const MAX_THREADS: u64 = 64;

/// A field of `/proc/PID/status`, such as `Threads` or `VmRSS` (kB), as a number.
fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with(&format!("{field}:"))).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Opens connections to `addr` until `stop`, writes [`PIPELINED`] JWKS GETs on each and closes
/// it without reading an answer. Every step is bounded by timeouts.
fn flood(addr: SocketAddr, flooder: usize, stop: &AtomicBool, sent: &AtomicU64, refused: &AtomicU64) {
    let mut connection = 0u64;
    while !stop.load(Ordering::Relaxed) {
        connection += 1;
        let namespace = if flooder >= FLOODERS - MISSING_FLOODERS {
            format!("miss-{flooder}-{connection}")
        } else {
            "flood".to_owned()
        };
        let request = format!("GET /v1/namespaces/{namespace}/jwks.json HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(request.repeat(PIPELINED).as_bytes()).is_ok() {
            sent.fetch_add(PIPELINED as u64, Ordering::Relaxed);
        }
        drop(stream);
    }
}

fn a_jwks_flood_leaves_the_service_responsive(backend: Backend) {
    // One flood at a time: two would measure the test machine (2 cores) more than the service.
    static ONE_FLOOD: Mutex<()> = Mutex::new(());
    let _flooding = ONE_FLOOD.lock().unwrap_or_else(PoisonError::into_inner);
    let server = Server::start(&backend);
    let pid = server.pid();
    let addr: SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let first = admin("POST", &server, "/v1/tokens", Some(create_body("flood", None)));
    assert_eq!(first.status, 201, "{}", first.body);
    let mut created = vec![first.json()["id"].as_str().unwrap().to_owned()];
    let threads_before = proc_status(pid, "Threads");

    let stop = AtomicBool::new(false);
    let (sent, refused) = (AtomicU64::new(0), AtomicU64::new(0));
    let (mut slowest_create, mut slowest_create_new_connection) = (Duration::ZERO, Duration::ZERO);
    let (mut slowest_jwks, mut slowest_metrics) = (Duration::ZERO, Duration::ZERO);
    let (mut most_threads, mut most_rss_kb) = (threads_before, proc_status(pid, "VmRSS"));
    std::thread::scope(|scope| {
        for flooder in 0..FLOODERS {
            let (stop, sent, refused) = (&stop, &sent, &refused);
            scope.spawn(move || flood(addr, flooder, stop, sent, refused));
        }
        // Stops the flood even if an assertion below fails (the scope joins the flooders).
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);

        let kept_alive = agent();
        let create = |agent: &ureq::Agent| {
            let body = create_body("flood", None).to_string();
            let asked = Instant::now();
            let answer =
                call_with(agent, "POST", &format!("{}/v1/tokens", server.url), Some(ADMIN_TOKEN), &[], Some(&body));
            let answer = answer.unwrap_or_else(|error| panic!("admin create during the flood: {error}"));
            assert_eq!(answer.status, 201, "{}", answer.body);
            (answer.json()["id"].as_str().unwrap().to_owned(), asked.elapsed())
        };
        let started = Instant::now();
        while started.elapsed() < FLOOD {
            std::thread::sleep(Duration::from_millis(200));
            let (id, took) = create(&kept_alive);
            assert!(took < RESPONSIVE, "an admin create took {took:?} during the flood");
            slowest_create = slowest_create.max(took);
            created.push(id);

            let asked = Instant::now();
            let jwks_url = format!("{}/v1/namespaces/flood/jwks.json", server.url);
            let answer = call_with(&kept_alive, "GET", &jwks_url, None, &[], None).unwrap();
            let took = asked.elapsed();
            assert_eq!(answer.status, 200, "{}", answer.body);
            assert!(took < RESPONSIVE, "a JWKS GET took {took:?} during the flood");
            slowest_jwks = slowest_jwks.max(took);
            // This process's own create shows in its JWKS at once, flood or not.
            assert!(kids(&answer).contains(created.last().unwrap()), "{}", answer.body);

            // `/metrics` reads counters only: the flood cannot hold it up.
            let asked = Instant::now();
            let metrics_url = format!("{}/metrics", server.url);
            let answer = call_with(&kept_alive, "GET", &metrics_url, None, &[], None).unwrap();
            let took = asked.elapsed();
            assert_eq!(answer.status, 200, "{}", answer.body);
            assert!(took < RESPONSIVE, "a GET /metrics took {took:?} during the flood");
            slowest_metrics = slowest_metrics.max(took);

            let (id, took) = create(&agent());
            assert!(took < RESPONSIVE_NEW_CONNECTION, "an admin create on a new connection took {took:?}");
            slowest_create_new_connection = slowest_create_new_connection.max(took);
            created.push(id);

            most_threads = most_threads.max(proc_status(pid, "Threads"));
            most_rss_kb = most_rss_kb.max(proc_status(pid, "VmRSS"));
            assert!(most_threads < MAX_THREADS, "{most_threads} threads during the flood");
        }
    });
    eprintln!(
        "flood on {}: {} GETs sent in {FLOOD:?} by {FLOODERS} threads ({} connections refused); \
         slowest admin create {slowest_create:?} ({slowest_create_new_connection:?} on a new connection), \
         slowest JWKS GET {slowest_jwks:?}, slowest GET /metrics {slowest_metrics:?}; \
         threads {threads_before} before, at most {most_threads}; RSS at most {} MiB",
        server.url,
        sent.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        most_rss_kb / 1024,
    );
    assert!(sent.load(Ordering::Relaxed) > 1000, "the flood hardly flowed");
    assert!(created.len() > 5, "only {} creates during the flood", created.len());

    // Afterwards: everything created is published, and the service still answers at once.
    let mut published = kids(&jwks(&server, "flood"));
    published.sort();
    created.sort();
    assert_eq!(published, created);
    let counted = scrape_metrics(&server);
    assert_eq!(counted["tokengate_tokens_created_total"], created.len() as u64);
    assert_eq!(counted[r#"tokengate_admin_requests_total{status_class="2xx"}"#], created.len() as u64);
    eprintln!("flood on {}: metrics after the flood: {counted:?}", server.url);
    // What the server answered to the flood: status -> (count, slowest handling in ms).
    let log = server.drain_log();
    let mut answered = std::collections::BTreeMap::<String, (u64, u64)>::new();
    for line in log.iter().filter(|line| line.contains("/jwks.json ")) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let millis: u64 = fields[4].trim_end_matches("ms").parse().unwrap();
        let (count, slowest) = answered.entry(fields[3].to_owned()).or_default();
        *count += 1;
        *slowest = (*slowest).max(millis);
    }
    eprintln!("flood on {}: JWKS answers by status (count, slowest ms): {answered:?}", server.url);
    assert!(!log.iter().any(|line| line.contains("internal error")));
    assert!(server.stop().success());
}
