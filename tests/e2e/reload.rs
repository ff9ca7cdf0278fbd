//! Configuration pushed while Envoy runs, as a control plane (Istio) does: listeners from a
//! file Envoy watches. A new configuration takes effect for new requests, and the filter
//! instance it replaces is freed in the VM (tokengate exports no delete callback; it asks).

use crate::harness::*;
use ed25519_compact::{KeyPair, Seed};
use serde_json::{json, Value};
use std::time::Duration;

#[test]
fn a_pushed_configuration_takes_effect_and_the_replaced_instance_is_freed() {
    let (one, two) = (KeyPair::from_seed(Seed::new([31; 32])), KeyPair::from_seed(Seed::new([32; 32])));
    let (t1, t2) = (ed25519_token("one", &one), ed25519_token("two", &two));
    let spec = |keys: Value| [ListenerSpec { name: "l".into(), plugin_config: json!({ "local_jwks": keys }) }];
    let function = TestServer::start(true);
    let envoy = Envoy::start_dynamic(&spec(ed25519_jwks(&[("one", &one)])), function.port, 1);
    let port = envoy.port("l");
    assert_eq!(call(port, Some(&t1)).status, 200);
    assert_eq!(call(port, Some(&t2)).reason().as_deref(), Some("unknown_key"));

    // Key one replaced by key two.
    envoy.update_listeners(&spec(ed25519_jwks(&[("two", &two)])), 1);
    let switched = eventually(Duration::from_secs(20), || (call(port, Some(&t2)).status == 200).then_some(()));
    assert!(switched.is_some(), "the pushed configuration never took effect; log:\n{}", envoy.log());
    assert_eq!(call(port, Some(&t1)).reason().as_deref(), Some("unknown_key"));

    // Each push creates a new instance; the one it replaced goes once its requests are done,
    // and the next instance created frees it in the VM.
    let mut version = 2;
    let freed = eventually(Duration::from_secs(20), || {
        envoy.update_listeners(&spec(ed25519_jwks(&[("one", &one), ("two", &two)])), version);
        version += 1;
        std::thread::sleep(Duration::from_millis(500));
        envoy.log().contains("deleted filter instance").then_some(())
    });
    assert!(freed.is_some(), "no replaced instance was freed; log:\n{}", envoy.log());
    let both = eventually(Duration::from_secs(20), || {
        (call(port, Some(&t1)).status == 200 && call(port, Some(&t2)).status == 200).then_some(())
    });
    assert!(both.is_some(), "the last configuration never took effect");
    envoy.assert_healthy();
}

#[test]
fn a_removed_listener_s_instance_is_freed_at_a_tick() {
    // No new instance is created here, so only the housekeeping tick can find the removed one.
    let one = KeyPair::from_seed(Seed::new([33; 32]));
    // Listeners with the same configuration share one filter instance: these differ.
    let spec = |name: &str| ListenerSpec {
        name: name.into(),
        plugin_config: json!({ "local_jwks": ed25519_jwks(&[("one", &one)]), "comment": name }),
    };
    let function = TestServer::start(true);
    let envoy = Envoy::start_dynamic(&[spec("l"), spec("m")], function.port, 1);
    let t1 = ed25519_token("one", &one);
    assert_eq!(call(envoy.port("m"), Some(&t1)).status, 200);
    envoy.update_listeners(&[spec("l")], 1);
    let freed = eventually(Duration::from_secs(20), || envoy.log().contains("deleted filter instance").then_some(()));
    assert!(freed.is_some(), "the removed listener's instance was never freed; log:\n{}", envoy.log());
    assert_eq!(call(envoy.port("l"), Some(&t1)).status, 200);
    envoy.assert_healthy();
}
