//! `tools/oci-image` packs the built filter into an OCI image layout that Istio's image fetcher
//! reads as a "compat" Wasm image, byte for byte reproducibly; `tools/istio-render` pins the
//! WasmPlugin to that image's manifest digest.
//!
//! Needs the built module (`make wasm`; or its path in TOKENGATE_WASM), python3, and Debian's
//! `gzip` and `sha256sum`, which check the tool's output independently of Python.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn module_path() -> PathBuf {
    let path = std::env::var_os("TOKENGATE_WASM")
        .map_or_else(|| root().join("target/wasm32-wasip1/release/tokengate.wasm"), PathBuf::from);
    assert!(path.is_file(), "{} is missing: build the filter with `make wasm` (or set TOKENGATE_WASM)", path.display());
    path
}

/// A directory of its own under the system temp dir, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("tokengate-oci-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(root())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (Debian: python3, gzip and coreutils)"));
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn succeed(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let out = run(program, args, stdin);
    assert!(out.status.success(), "{program} {args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// `tools/oci-image MODULE DIR TAG`; returns what it printed.
fn oci_image(module: &Path, dir: &Path, tag: &str) -> String {
    let args = ["tools/oci-image", module.to_str().unwrap(), dir.to_str().unwrap(), tag];
    String::from_utf8(succeed("python3", &args, None)).unwrap()
}

/// `sha256:<hex>` by coreutils' sha256sum.
fn sha256(bytes: &[u8]) -> String {
    let out = String::from_utf8(succeed("sha256sum", &[], Some(bytes))).unwrap();
    format!("sha256:{}", out.split_whitespace().next().unwrap())
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    assert_eq!(bytes.get(..2), Some(&[0x1f, 0x8b][..]), "the layer is gzip");
    succeed("gzip", &["-dc"], Some(bytes))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An entry of a tar archive, as its header block says.
#[derive(Debug)]
struct TarEntry {
    name: String,
    kind: u8,
    mode: u64,
    uid: u64,
    gid: u64,
    mtime: u64,
    data: Vec<u8>,
}

fn octal(field: &[u8]) -> u64 {
    let text = std::str::from_utf8(field).unwrap().trim_matches(|c: char| c == '\0' || c == ' ');
    u64::from_str_radix(if text.is_empty() { "0" } else { text }, 8).unwrap()
}

fn text(field: &[u8]) -> String {
    String::from_utf8(field.iter().take_while(|&&b| b != 0).copied().collect()).unwrap()
}

/// Every entry of a ustar archive, pax and GNU extension headers included as entries of their own.
fn tar_entries(tar: &[u8]) -> Vec<TarEntry> {
    assert_eq!(tar.len() % 512, 0, "a tar is whole 512-byte blocks");
    let mut entries = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() {
        let header = &tar[at..at + 512];
        if header.iter().all(|&b| b == 0) {
            assert!(tar[at..].iter().all(|&b| b == 0), "nothing after the end-of-archive blocks");
            return entries;
        }
        let stored: u64 = octal(&header[148..156]);
        let sum: u64 =
            header.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u64::from(b) }).sum();
        assert_eq!(stored, sum, "header checksum of entry {}", entries.len());
        let size = usize::try_from(octal(&header[124..136])).unwrap();
        let prefix = text(&header[345..500]);
        let name = text(&header[..100]);
        let data = tar[at + 512..at + 512 + size].to_vec();
        entries.push(TarEntry {
            name: if prefix.is_empty() { name } else { format!("{prefix}/{name}") },
            kind: header[156],
            mode: octal(&header[100..108]),
            uid: octal(&header[108..116]),
            gid: octal(&header[116..124]),
            mtime: octal(&header[136..148]),
            data,
        });
        at += 512 + size.div_ceil(512) * 512;
    }
    panic!("the tar has no end-of-archive block");
}

/// The blob a descriptor points at, after checking that it is there with the size it claims.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").unwrap_or_else(|| panic!("{digest} is not sha256"));
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap_or_else(|e| panic!("blob {digest}: {e}"));
    assert_eq!(descriptor["size"].as_u64(), Some(bytes.len() as u64), "size of blob {digest}");
    bytes
}

#[test]
fn the_layout_holds_one_compat_wasm_image_of_the_module() {
    let module_file = module_path();
    let module = std::fs::read(&module_file).unwrap();
    let tmp = TempDir::new("layout");
    let layout = tmp.0.join("image");
    let printed = oci_image(&module_file, &layout, "tokengate:test");

    assert_eq!(read_json(&layout.join("oci-layout")), serde_json::json!({"imageLayoutVersion": "1.0.0"}));

    // Every blob is named by its content's digest.
    let mut on_disk = BTreeSet::new();
    for file in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let file = file.unwrap();
        let name = file.file_name().into_string().unwrap();
        assert_eq!(sha256(&std::fs::read(file.path()).unwrap()), format!("sha256:{name}"), "blob {name}");
        on_disk.insert(format!("sha256:{name}"));
    }

    // index.json -> the manifest, tagged.
    let index = read_json(&layout.join("index.json"));
    assert_eq!(index["schemaVersion"], 2);
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "one image");
    let entry = &manifests[0];
    assert_eq!(entry["mediaType"], MANIFEST_TYPE);
    assert_eq!(entry["annotations"]["org.opencontainers.image.ref.name"], "tokengate:test");
    let manifest_digest = entry["digest"].as_str().unwrap();
    assert!(
        printed.lines().any(|l| l.starts_with("manifest ") && l.contains(manifest_digest)),
        "the tool prints the manifest digest:\n{printed}"
    );
    let manifest: Value = serde_json::from_slice(&blob(&layout, entry)).unwrap();

    // The manifest: the compat variant, a config and exactly one tar+gzip layer.
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MANIFEST_TYPE);
    assert_eq!(manifest["annotations"]["module.wasm.image/variant"], "compat");
    assert_eq!(manifest["config"]["mediaType"], CONFIG_TYPE);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "one layer");
    assert_eq!(layers[0]["mediaType"], LAYER_TYPE);
    let layer_digest = layers[0]["digest"].as_str().unwrap();
    assert!(printed.lines().any(|l| l.starts_with("layer ") && l.contains(layer_digest)), "{printed}");

    // The layer: a tar with exactly one regular file, plugin.wasm, the module itself, with no
    // owner, time or mode that would vary from one build to the next.
    let tar = gunzip(&blob(&layout, &layers[0]));
    let entries = tar_entries(&tar);
    assert_eq!(entries.len(), 1, "exactly one entry: {entries:?}");
    let file = &entries[0];
    assert_eq!((file.name.as_str(), file.kind), ("plugin.wasm", b'0'), "a regular file plugin.wasm");
    assert!(file.data == module, "plugin.wasm is {} byte for byte", module_file.display());
    assert_eq!((file.mode, file.uid, file.gid, file.mtime), (0o644, 0, 0, 0));

    // The config: valid, and its diff_id is the digest of the uncompressed layer.
    let config: Value = serde_json::from_slice(&blob(&layout, &manifest["config"])).unwrap();
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip1");
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!([sha256(&tar)]));

    // Nothing else is stored.
    let referenced: BTreeSet<String> = [manifest_digest, manifest["config"]["digest"].as_str().unwrap(), layer_digest]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(on_disk, referenced);
}

#[test]
fn the_same_module_always_gives_the_same_image() {
    let module = module_path();
    let tmp = TempDir::new("twice");
    let (first, second) = (tmp.0.join("first"), tmp.0.join("second"));
    oci_image(&module, &first, "tokengate:test");
    oci_image(&module, &second, "tokengate:test");
    let digest = |layout: &Path| read_json(&layout.join("index.json"))["manifests"][0]["digest"].clone();
    assert_eq!(digest(&first), digest(&second));
    assert_eq!(std::fs::read(first.join("index.json")).unwrap(), std::fs::read(second.join("index.json")).unwrap());

    // Building again into an existing layout replaces it, with the same result.
    oci_image(&module, &first, "tokengate:test");
    assert_eq!(digest(&first), digest(&second));
    assert_eq!(std::fs::read_dir(first.join("blobs/sha256")).unwrap().count(), 3);
}

#[test]
fn the_tool_refuses_what_is_not_a_module_or_not_a_layout() {
    let tmp = TempDir::new("refuse");
    let out = run("python3", &["tools/oci-image", "Cargo.toml", tmp.0.join("a").to_str().unwrap(), "t"], None);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not a WebAssembly module"));
    assert!(!tmp.0.join("a").exists());

    let precious = tmp.0.join("precious");
    std::fs::create_dir(&precious).unwrap();
    std::fs::write(precious.join("notes.txt"), "keep me").unwrap();
    let module = module_path();
    let out = run("python3", &["tools/oci-image", module.to_str().unwrap(), precious.to_str().unwrap(), "t"], None);
    assert!(!out.status.success(), "a directory that is not an OCI layout is left alone");
    assert_eq!(std::fs::read_to_string(precious.join("notes.txt")).unwrap(), "keep me");
}

#[test]
fn istio_render_pins_the_wasm_plugin_to_the_manifest_digest() {
    let module = module_path();
    let tmp = TempDir::new("render");
    let layout = tmp.0.join("oci");
    let version = env!("CARGO_PKG_VERSION");
    oci_image(&module, &layout, version);
    let manifest_digest = read_json(&layout.join("index.json"))["manifests"][0]["digest"].as_str().unwrap().to_owned();

    let rendered = String::from_utf8(succeed(
        "python3",
        &["tools/istio-render", "--registry", "registry.example:5000/team", "--oci", layout.to_str().unwrap()],
        None,
    ))
    .unwrap();
    let line = |key: &str| -> Vec<&str> { rendered.lines().map(str::trim).filter(|l| l.starts_with(key)).collect() };
    assert_eq!(line("sha256:"), [format!("sha256: {}", manifest_digest.strip_prefix("sha256:").unwrap())]);
    assert_eq!(line("url:"), [format!("url: oci://registry.example:5000/team/tokengate:{version}")]);
    assert!(line("image:").contains(&format!("image: registry.example:5000/team/tokengate-keys:{version}").as_str()));
    let placeholders = rendered.lines().filter(|l| !l.trim_start().starts_with('#') && l.contains("REGISTRY"));
    assert_eq!(placeholders.count(), 0, "{rendered}");
    for kind in ["WasmPlugin", "Deployment", "Service", "PersistentVolumeClaim", "AuthorizationPolicy", "Namespace"] {
        assert!(rendered.contains(&format!("kind: {kind}\n")), "{kind} is rendered");
    }

    // A layout without the version the WasmPlugin names is refused, with the way out.
    let other = tmp.0.join("other");
    oci_image(&module, &other, "not-this-version");
    let out =
        run("python3", &["tools/istio-render", "--registry", "r.example", "--oci", other.to_str().unwrap()], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("make oci"), "{}", String::from_utf8_lossy(&out.stderr));
}
