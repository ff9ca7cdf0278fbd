//! The [`TokenStore`] contract through the library API, the same tests on each backend: SQLite
//! and PostgreSQL must answer every call alike. Then what only PostgreSQL has: lost
//! connections, the pool.

use std::sync::Barrier;

use tokengate_cli::jwks::is_published;
use tokengate_cli::store::{NewToken, PostgresStore, StoreError, TokenFilter};

use crate::backend::{on_each_backend, Backend};
use crate::replicas::terminate_connections;

const NOW: i64 = 1_796_317_200;

on_each_backend!(
    create_get_list_delete,
    live_keys_follow_the_liveness_rule,
    reopening_keeps_tokens_and_the_schema_version,
    refuses_a_newer_schema,
    a_second_store_sees_changes_at_once,
    stores_opened_together_migrate_once,
);

fn token(id: &str, namespace: &str, function: Option<&str>, created_at: i64) -> NewToken {
    NewToken {
        id: id.to_owned(),
        namespace_id: namespace.to_owned(),
        function_id: function.map(str::to_owned),
        description: format!("token {id}"),
        created_at,
        expires_at: None,
        public_key: [id.len() as u8; 32],
    }
}

fn namespace(namespace: &str) -> TokenFilter {
    TokenFilter { namespace_id: namespace.to_owned(), function_id: None }
}

fn ids<T>(items: &[T], id: impl Fn(&T) -> &str) -> Vec<String> {
    items.iter().map(|item| id(item).to_owned()).collect()
}

fn create_get_list_delete(backend: Backend) {
    let open = backend.open(NOW).unwrap();
    let store = open.store();
    store.create(&token("b", "shop", Some("cart"), NOW)).unwrap();
    store.create(&token("a", "shop", None, NOW)).unwrap();
    store.create(&token("c", "shop", Some("pay"), NOW - 5)).unwrap();
    store.create(&token("d", "other", None, NOW)).unwrap();
    // Same instant: ids in byte order, whatever the database's locale ("B" < "a" < "a-c" < "ab").
    for id in ["ab", "a-c", "B"] {
        store.create(&token(id, "bytes", None, NOW)).unwrap();
    }

    let all = store.list(&namespace("shop")).unwrap();
    assert_eq!(ids(&all, |r| &r.id), ["c", "a", "b"]);
    assert_eq!(ids(&store.list(&namespace("bytes")).unwrap(), |r| &r.id), ["B", "a-c", "ab"]);
    assert_eq!(all[1], token("a", "shop", None, NOW).record());

    let cart = store.list(&TokenFilter { namespace_id: "shop".to_owned(), function_id: Some("cart".to_owned()) });
    let cart = cart.unwrap();
    assert_eq!(cart.len(), 1);
    assert_eq!(cart[0].function_id.as_deref(), Some("cart"));
    assert_eq!(cart[0].description, "token b");
    assert!(store.list(&namespace("nobody")).unwrap().is_empty());

    assert!(matches!(store.create(&token("a", "x", None, NOW)), Err(StoreError::DuplicateId(id)) if id == "a"));

    assert_eq!(store.get("zz").unwrap(), None);
    assert_eq!(store.get("b").unwrap(), Some(token("b", "shop", Some("cart"), NOW).record()));
    assert!(store.delete("a", NOW + 1).unwrap());
    assert!(!store.delete("a", NOW + 2).unwrap());
    assert!(!store.delete("zz", NOW).unwrap());
    assert_eq!(store.get("a").unwrap().unwrap().deleted_at, Some(NOW + 1));
}

fn live_keys_follow_the_liveness_rule(backend: Backend) {
    let open = backend.open(NOW).unwrap();
    let store = open.store();
    let cases: &[(&str, Option<i64>, bool)] = &[
        ("never", None, false),
        ("later", Some(NOW + 10), false),
        ("grace", Some(NOW - 3599), false),
        ("gone", Some(NOW - 3600), false),
        ("deleted", None, true),
    ];
    for (index, (id, expires_at, deleted)) in cases.iter().enumerate() {
        let mut new = token(id, "shop", None, NOW - 100 + index as i64);
        new.expires_at = *expires_at;
        store.create(&new).unwrap();
        if *deleted {
            store.delete(id, NOW - 1).unwrap();
        }
    }
    for now in [NOW - 7200, NOW, NOW + 11, NOW + 7200] {
        let live = store.live_keys_for_namespace("shop", now).unwrap();
        let expected: Vec<String> = cases
            .iter()
            .filter(|(id, expires_at, _)| {
                let deleted_at = store.get(id).unwrap().unwrap().deleted_at;
                is_published(*expires_at, deleted_at, now)
            })
            .map(|(id, _, _)| (*id).to_owned())
            .collect();
        assert_eq!(ids(&live, |k| &k.id), expected, "now = {now}");
    }
    let live = store.live_keys_for_namespace("shop", NOW).unwrap();
    assert_eq!(ids(&live, |k| &k.id), ["never", "later", "grace"]);
    assert_eq!(live[0].public_key, [5; 32]);
    assert!(store.live_keys_for_namespace("nobody", NOW).unwrap().is_empty());
}

fn reopening_keeps_tokens_and_the_schema_version(backend: Backend) {
    {
        let open = backend.open(NOW).unwrap();
        assert_eq!(open.schema_version(), open.known_schema_version());
        open.store().create(&token("kept", "shop", None, NOW)).unwrap();
    }
    let open = backend.open(NOW + 5).unwrap();
    assert_eq!(open.schema_version(), open.known_schema_version());
    assert_eq!(open.store().get("kept").unwrap(), Some(token("kept", "shop", None, NOW).record()));
}

fn refuses_a_newer_schema(backend: Backend) {
    drop(backend.open(NOW).unwrap());
    backend.execute("INSERT INTO schema_version (version, applied_at) VALUES (99, 0)");
    assert!(matches!(backend.open(NOW), Err(StoreError::NewerSchema { found: 99, .. })));
}

fn a_second_store_sees_changes_at_once(backend: Backend) {
    let (first, second) = (backend.open(NOW).unwrap(), backend.open(NOW).unwrap());
    let (first, second) = (first.store(), second.store());
    first.create(&token("new", "shop", None, NOW)).unwrap();
    assert!(second.get("new").unwrap().is_some());
    assert_eq!(ids(&second.list(&namespace("shop")).unwrap(), |r| &r.id), ["new"]);
    assert_eq!(ids(&second.live_keys_for_namespace("shop", NOW).unwrap(), |k| &k.id), ["new"]);
    assert!(second.delete("new", NOW).unwrap());
    assert!(first.live_keys_for_namespace("shop", NOW).unwrap().is_empty());
    assert!(!first.delete("new", NOW).unwrap());
}

fn stores_opened_together_migrate_once(backend: Backend) {
    const OPENERS: usize = 6;
    let barrier = Barrier::new(OPENERS);
    std::thread::scope(|scope| {
        let openers: Vec<_> = (0..OPENERS)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    backend.open(NOW).map(|open| open.schema_version())
                })
            })
            .collect();
        for opener in openers {
            let version = opener.join().unwrap().unwrap();
            assert!(version >= 1, "{version}");
        }
    });
    let open = backend.open(NOW).unwrap();
    assert_eq!(open.schema_version(), open.known_schema_version());
}

#[test]
fn postgres_store_survives_lost_connections() {
    let Some(backend) = Backend::postgres(concat!(module_path!(), "::postgres_store_survives_lost_connections")) else {
        return;
    };
    let Backend::Postgres(database) = &backend else { panic!("not PostgreSQL") };
    let open = backend.open(NOW).unwrap();
    let store = open.store();
    store.create(&token("before", "shop", None, NOW)).unwrap();

    // Each call below finds its connection dead, and is retried on a fresh one.
    terminate_connections(database);
    assert!(store.get("before").unwrap().is_some());
    terminate_connections(database);
    store.create(&token("after", "shop", None, NOW + 1)).unwrap();
    terminate_connections(database);
    assert!(store.delete("before", NOW + 2).unwrap());
    terminate_connections(database);
    assert_eq!(ids(&store.live_keys_for_namespace("shop", NOW).unwrap(), |k| &k.id), ["after"]);
    terminate_connections(database);
    assert_eq!(store.list(&namespace("shop")).unwrap().len(), 2);
}

#[test]
fn postgres_store_keeps_a_small_pool() {
    let Some(backend) = Backend::postgres(concat!(module_path!(), "::postgres_store_keeps_a_small_pool")) else {
        return;
    };
    let Backend::Postgres(database) = &backend else { panic!("not PostgreSQL") };
    let open = backend.open(NOW).unwrap();
    let store = open.store();
    std::thread::scope(|scope| {
        for thread in 0..16 {
            scope.spawn(move || {
                for round in 0..10 {
                    let id = format!("t{thread}-{round}");
                    store.create(&token(&id, "busy", None, NOW)).unwrap();
                    assert!(store.get(&id).unwrap().is_some());
                }
            });
        }
    });
    assert_eq!(store.list(&namespace("busy")).unwrap().len(), 160);
    let sessions: i64 = database
        .client()
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'tokengate'",
            &[&database.name],
        )
        .unwrap()
        .get(0);
    assert!((1..=PostgresStore::POOL_SIZE as i64).contains(&sessions), "{sessions} sessions");
}
