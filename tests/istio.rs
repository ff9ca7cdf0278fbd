//! The Istio manifests (`envoy/istio/`) keep to the filter's contract and to each other: the
//! WasmPlugin's `pluginConfig` passes the filter's own validation, the plugin is an AUTHN,
//! fail-closed, inbound-only filter on the sample function, and its key cluster is the one Istio
//! makes for the key service's Service, whose pods listen where that Service sends them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::path::PathBuf;
use tokengate::config::{self, KeySource};

fn read(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// One document of a manifest file, read just far enough for these checks: block mappings and
/// sequences, one `key: value` per line, sequence items numbered from 0 in the path. A flow
/// collection (`{…}`, `[…]`) is kept whole as its key's text, however many lines it spans.
struct Doc {
    values: Vec<(Vec<String>, String)>,
}

impl Doc {
    fn parse(text: &str) -> Doc {
        struct Level {
            indent: usize,
            key: String,
            item: bool,
        }
        let mut stack: Vec<Level> = Vec::new();
        let mut items: HashMap<Vec<String>, usize> = HashMap::new();
        let mut values = Vec::new();
        let mut lines = text.lines();
        let path = |stack: &[Level]| stack.iter().map(|l| l.key.clone()).collect::<Vec<_>>();
        while let Some(line) = lines.next() {
            let mut rest = line.trim_start();
            if rest.is_empty() || rest.starts_with('#') {
                continue;
            }
            let mut indent = line.len() - rest.len();
            while let Some(after) = rest.strip_prefix("- ").or(if rest == "-" { Some("") } else { None }) {
                // `key:` and its `- item`s may share an indentation (the Kubernetes style).
                while stack.last().is_some_and(|l| l.indent > indent || (l.indent == indent && l.item)) {
                    stack.pop();
                }
                let count = items.entry(path(&stack)).or_insert(0);
                stack.push(Level { indent, key: count.to_string(), item: true });
                *count += 1;
                indent += 2;
                rest = after.trim_start();
            }
            let mut value = match split_key(rest) {
                Some((key, value)) => {
                    while stack.last().is_some_and(|l| l.indent >= indent) {
                        stack.pop();
                    }
                    stack.push(Level { indent, key, item: false });
                    value
                }
                None => strip_comment(rest).to_owned(),
            };
            while unbalanced(&value) {
                let next = lines.next().unwrap_or_else(|| panic!("unclosed flow collection: {value}"));
                value.push('\n');
                value.push_str(next);
            }
            if !value.is_empty() {
                values.push((path(&stack), unquote(&value)));
            }
        }
        Doc { values }
    }

    fn get(&self, path: &[&str]) -> Option<&str> {
        self.values.iter().find(|(p, _)| p.iter().map(String::as_str).eq(path.iter().copied())).map(|(_, v)| v.as_str())
    }

    fn at(&self, path: &[&str]) -> &str {
        self.get(path).unwrap_or_else(|| panic!("{} of {}: missing", path.join("."), self.name()))
    }

    fn name(&self) -> String {
        format!("{} {}", self.get(&["kind"]).unwrap_or("?"), self.get(&["metadata", "name"]).unwrap_or("?"))
    }
}

/// `key: value` or `key:` (value empty), with any comment after the value removed.
fn split_key(rest: &str) -> Option<(String, String)> {
    if rest.starts_with(['"', '\'', '{', '[']) {
        return None;
    }
    let (key, value) = match rest.split_once(": ") {
        Some((key, value)) => (key, value),
        None => (rest.strip_suffix(':')?, ""),
    };
    (!key.contains(' ')).then(|| (key.to_owned(), strip_comment(value).to_owned()))
}

fn strip_comment(value: &str) -> &str {
    let mut quote = None;
    for (i, c) in value.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if i == 0 || value[..i].ends_with(' ') => return value[..i].trim_end(),
            _ => {}
        }
    }
    value.trim_end()
}

/// Whether a flow collection's text still has brackets open (outside strings).
fn unbalanced(text: &str) -> bool {
    if !text.starts_with(['{', '[']) {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0i32, false, false);
    for c in text.chars() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => in_string = false,
            (false, _, '"') => in_string = true,
            (false, _, '{' | '[') => depth += 1,
            (false, _, '}' | ']') => depth -= 1,
            _ => {}
        }
    }
    depth > 0
}

fn unquote(value: &str) -> String {
    for q in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner.to_owned();
        }
    }
    value.to_owned()
}

fn documents(path: &str) -> Vec<Doc> {
    read(path).split("\n---\n").map(Doc::parse).collect()
}

fn find<'a>(docs: &'a [Doc], kind: &str, name: &str) -> &'a Doc {
    docs.iter()
        .find(|d| d.get(&["kind"]) == Some(kind) && d.get(&["metadata", "name"]) == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn wasm_plugin() -> Doc {
    let mut docs = documents("envoy/istio/wasmplugin.yaml");
    assert_eq!(docs.len(), 1, "wasmplugin.yaml holds the WasmPlugin only");
    docs.remove(0)
}

fn plugin_config(plugin: &Doc) -> config::FilterConfig {
    let text = plugin.at(&["spec", "pluginConfig"]);
    config::parse(text.as_bytes()).unwrap_or_else(|e| panic!("WasmPlugin pluginConfig: {e}\n{text}"))
}

/// The cluster and authority Istio gives a Service's port: `outbound|PORT||NAME.NS.svc.cluster.local`.
fn istio_cluster(service: &Doc) -> (String, String, u16) {
    let host =
        format!("{}.{}.svc.cluster.local", service.at(&["metadata", "name"]), service.at(&["metadata", "namespace"]));
    let port: u16 = service.at(&["spec", "ports", "0", "port"]).parse().unwrap();
    (format!("outbound|{port}||{host}"), host, port)
}

/// Istio's AuthorizationPolicy path rule: exact, `prefix*`, `*suffix` or `*`.
fn path_matches(rule: &str, path: &str) -> bool {
    if rule == "*" {
        true
    } else if let Some(prefix) = rule.strip_suffix('*') {
        path.starts_with(prefix)
    } else if let Some(suffix) = rule.strip_prefix('*') {
        path.ends_with(suffix)
    } else {
        rule == path
    }
}

#[test]
fn the_plugin_configuration_passes_the_filters_own_validation() {
    let plugin = wasm_plugin();
    let config = plugin_config(&plugin);
    let KeySource::Remote(remote) = &config.keys else { panic!("the plugin fetches its keys from the key service") };
    let scope = config.policy.scope.as_ref().expect("the plugin protects one function");
    assert_eq!(scope.namespace_id, "demo");
    assert_eq!(scope.function_id.as_deref(), Some("hello"));
    assert_eq!(remote.path, format!("/v1/namespaces/{}/jwks.json", scope.namespace_id), "the namespace's own key set");
    assert_eq!(config.policy.issuer.as_deref(), Some("tokengate"), "the key service's issuer");

    // Istio carries pluginConfig as a protobuf Struct, whose numbers are doubles, and hands the
    // filter that Struct printed as JSON: whole numbers survive the trip as they are written.
    fn numbers(value: &serde_json::Value, out: &mut Vec<serde_json::Number>) {
        match value {
            serde_json::Value::Number(n) => out.push(n.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|v| numbers(v, out)),
            serde_json::Value::Object(o) => o.values().for_each(|v| numbers(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    numbers(&json(plugin.at(&["spec", "pluginConfig"])), &mut found);
    assert!(!found.is_empty());
    for n in found {
        assert!(n.as_u64().is_some_and(|n| n < 1 << 53), "{n} is not a whole number a double holds exactly");
    }
}

#[test]
fn the_plugin_is_an_authn_fail_closed_inbound_filter_on_the_sample_function() {
    let plugin = wasm_plugin();
    assert_eq!(plugin.at(&["apiVersion"]), "extensions.istio.io/v1alpha1");
    assert_eq!(plugin.at(&["kind"]), "WasmPlugin");
    assert_eq!(plugin.at(&["spec", "phase"]), "AUTHN");
    assert_eq!(plugin.at(&["spec", "failStrategy"]), "FAIL_CLOSE");
    assert_eq!(plugin.at(&["spec", "match", "0", "mode"]), "SERVER", "requests to the function, not from it");
    assert_eq!(plugin.get(&["spec", "match", "1", "mode"]), None);
    assert_eq!(plugin.at(&["spec", "selector", "matchLabels", "app"]), "hello");

    let url = plugin.at(&["spec", "url"]);
    assert_eq!(url, format!("oci://REGISTRY/tokengate:{}", env!("CARGO_PKG_VERSION")), "the image `make oci` tags");
    let sha256 = plugin.at(&["spec", "sha256"]);
    assert!(
        sha256 == "MANIFEST_DIGEST_FROM_MAKE_OCI"
            || (sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit())),
        "sha256 is tools/istio-render's placeholder or a manifest digest: {sha256}"
    );

    // The function the plugin selects: same namespace, same label, listening for the sidecar.
    let function = documents("envoy/istio/hello.yaml");
    let deployment = find(&function, "Deployment", "hello");
    assert_eq!(deployment.at(&["metadata", "namespace"]), plugin.at(&["metadata", "namespace"]));
    assert_eq!(deployment.at(&["spec", "template", "metadata", "labels", "app"]), "hello");
    let scope = plugin_config(&plugin).policy.scope.unwrap();
    assert_eq!(Some(deployment.at(&["metadata", "name"])), scope.function_id.as_deref());
    assert_eq!(
        deployment.at(&["metadata", "namespace"]),
        scope.namespace_id,
        "the function's namespace is the token namespace"
    );
    let command = json(deployment.at(&["spec", "template", "spec", "containers", "0", "command"]));
    let command: Vec<&str> = command.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(command.windows(2).any(|w| w == ["--listen", "0.0.0.0"]), "{command:?}");
    let service = find(&function, "Service", "hello");
    assert_eq!(service.at(&["spec", "selector", "app"]), "hello");
    assert!(find(&function, "Namespace", "demo").get(&["metadata", "labels", "istio-injection"]) == Some("enabled"));
}

#[test]
fn the_key_cluster_is_the_one_istio_makes_for_the_key_service() {
    let plugin = wasm_plugin();
    let KeySource::Remote(remote) = plugin_config(&plugin).keys else { panic!("remote keys") };
    let docs = documents("envoy/istio/key-service.yaml");
    let services: Vec<&Doc> = docs.iter().filter(|d| d.get(&["kind"]) == Some("Service")).collect();
    let service = services.iter().find(|s| istio_cluster(s).0 == remote.cluster).unwrap_or_else(|| {
        let known: Vec<String> = services.iter().map(|s| istio_cluster(s).0).collect();
        panic!("jwks.cluster {} is no cluster of key-service.yaml's Services: {known:?}", remote.cluster)
    });
    let (_, host, port) = istio_cluster(service);
    assert_eq!(remote.cluster, "outbound|8081||tokengate-keys.tokengate.svc.cluster.local");
    assert!(
        remote.authority == host || remote.authority == format!("{host}:{port}"),
        "the fetch's :authority names the service ({host}), not the cluster: {}",
        remote.authority
    );
    assert!(
        service.get(&["spec", "ports", "0", "name"]) == Some("http")
            || service.get(&["spec", "ports", "0", "appProtocol"]) == Some("http"),
        "Istio must know the port speaks HTTP"
    );

    // The Service reaches the key service's pods on the port they listen on, on every address.
    let name = service.at(&["metadata", "name"]);
    let deployment = find(&docs, "Deployment", name);
    let pod = ["spec", "template", "spec"];
    assert_eq!(deployment.at(&["metadata", "namespace"]), service.at(&["metadata", "namespace"]));
    assert_eq!(
        deployment.at(&["spec", "template", "metadata", "labels", "app"]),
        service.at(&["spec", "selector", "app"])
    );
    let container = [&pod[..], &["containers", "0"]].concat();
    let field = |rest: &[&str]| deployment.at(&[&container[..], rest].concat());
    let target = service.at(&["spec", "ports", "0", "targetPort"]);
    assert_eq!(field(&["ports", "0", "name"]), target);
    let container_port = field(&["ports", "0", "containerPort"]);
    let args = json(field(&["args"]));
    let args: Vec<&str> = args.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(args.first(), Some(&"serve"));
    let flag = |name: &str| {
        args.windows(2).find(|w| w[0] == name).map(|w| w[1]).unwrap_or_else(|| panic!("{name} in {args:?}"))
    };
    assert_eq!(
        flag("--listen"),
        format!("0.0.0.0:{container_port}"),
        "inside the pod, the sidecar connects to the pod IP"
    );

    // The admin token comes from a Secret, the SQLite data dir from a volume that outlives the pod.
    assert_eq!(field(&["env", "0", "name"]), "TOKENGATE_ADMIN_TOKEN");
    assert!(!field(&["env", "0", "valueFrom", "secretKeyRef", "name"]).is_empty());
    assert_eq!(field(&["volumeMounts", "0", "mountPath"]), flag("--data-dir"));
    let volume = field(&["volumeMounts", "0", "name"]);
    assert_eq!(deployment.at(&[&pod[..], &["volumes", "0", "name"]].concat()), volume);
    let claim = deployment.at(&[&pod[..], &["volumes", "0", "persistentVolumeClaim", "claimName"]].concat());
    assert_eq!(find(&docs, "PersistentVolumeClaim", claim).at(&["metadata", "namespace"]), "tokengate");
    assert_eq!(deployment.at(&["spec", "replicas"]), "1", "SQLite has one writer");
    assert_eq!(deployment.at(&["spec", "strategy", "type"]), "Recreate", "two pods never hold the volume");

    // Through the mesh, the key sets can be read and the admin API cannot be reached.
    let policy = docs.iter().find(|d| d.get(&["kind"]) == Some("AuthorizationPolicy")).expect("an AuthorizationPolicy");
    assert_eq!(policy.at(&["spec", "selector", "matchLabels", "app"]), service.at(&["spec", "selector", "app"]));
    assert_eq!(policy.at(&["spec", "action"]), "ALLOW");
    let operation = ["spec", "rules", "0", "to", "0", "operation"];
    let paths = json(policy.at(&[&operation[..], &["paths"]].concat()));
    let allowed = |path: &str| paths.as_array().unwrap().iter().any(|rule| path_matches(rule.as_str().unwrap(), path));
    assert!(allowed(&remote.path), "the filter's fetch of {} is allowed", remote.path);
    assert!(!allowed("/v1/tokens") && !allowed("/v1/tokens/9ffe3113-8888-4fda-8400-07016326750c"));
    assert!(json(policy.at(&[&operation[..], &["methods"]].concat())).as_array().unwrap().contains(&"GET".into()));
    assert_eq!(policy.get(&["spec", "rules", "1", "to", "0", "operation", "paths"]), None);
}

#[test]
fn the_reader_understands_the_yaml_these_files_use() {
    let doc = Doc::parse(
        "kind: Thing # comment\nspec:\n  list:\n  - name: a\n    port: 1\n  - name: b\n  flow: {\n      \"x\": [1,\n 2]\n    }\n  after: \"q # not a comment\"\n",
    );
    assert_eq!(doc.at(&["kind"]), "Thing");
    assert_eq!(doc.at(&["spec", "list", "0", "port"]), "1");
    assert_eq!(doc.at(&["spec", "list", "1", "name"]), "b");
    assert_eq!(json(doc.at(&["spec", "flow"])), json("{\"x\": [1, 2]}"));
    assert_eq!(doc.at(&["spec", "after"]), "q # not a comment");
    assert_eq!(doc.get(&["spec", "list", "2", "name"]), None);
}
