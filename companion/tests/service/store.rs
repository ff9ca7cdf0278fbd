//! The [`TokenStore`] contract through the library API, the same tests on each backend: SQLite
//! and PostgreSQL must answer every call alike, the per-namespace key cap included (also under
//! concurrent creates from two stores, as from two replicas). Then what only PostgreSQL has:
//! lost connections, the pool.

use std::sync::Barrier;

use tokengate_cli::jwks::is_published;
use tokengate_cli::store::{CreateOutcome, NewToken, PostgresStore, StoreError, TokenFilter, TokenStore};

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
    the_key_cap_counts_published_keys,
    concurrent_creates_never_pass_the_cap,
    concurrent_deletes_revoke_once,
);

/// A key cap no test here reaches, for the tests that are not about the cap.
const ROOMY: u32 = 25_000;

/// Records `token`, which must fit.
fn created(store: &dyn TokenStore, token: &NewToken) {
    assert_eq!(store.create(token, ROOMY).unwrap(), CreateOutcome::Created, "{}", token.id);
}

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
    created(store, &token("b", "shop", Some("cart"), NOW));
    created(store, &token("a", "shop", None, NOW));
    created(store, &token("c", "shop", Some("pay"), NOW - 5));
    created(store, &token("d", "other", None, NOW));
    // Same instant: ids in byte order, whatever the database's locale ("B" < "a" < "a-c" < "ab").
    for id in ["ab", "a-c", "B"] {
        created(store, &token(id, "bytes", None, NOW));
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

    assert!(matches!(store.create(&token("a", "x", None, NOW), ROOMY), Err(StoreError::DuplicateId(id)) if id == "a"));

    assert_eq!(store.get("zz").unwrap(), None);
    assert_eq!(store.get("b").unwrap(), Some(token("b", "shop", Some("cart"), NOW).record()));
    assert_eq!(store.delete("a", NOW + 1).unwrap().as_deref(), Some("shop"));
    assert_eq!(store.delete("a", NOW + 2).unwrap(), None);
    assert_eq!(store.delete("zz", NOW).unwrap(), None);
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
        created(store, &new);
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
        created(open.store(), &token("kept", "shop", None, NOW));
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
    created(first, &token("new", "shop", None, NOW));
    assert!(second.get("new").unwrap().is_some());
    assert_eq!(ids(&second.list(&namespace("shop")).unwrap(), |r| &r.id), ["new"]);
    assert_eq!(ids(&second.live_keys_for_namespace("shop", NOW).unwrap(), |k| &k.id), ["new"]);
    assert_eq!(second.delete("new", NOW).unwrap().as_deref(), Some("shop"));
    assert!(first.live_keys_for_namespace("shop", NOW).unwrap().is_empty());
    assert_eq!(first.delete("new", NOW).unwrap(), None);
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

fn the_key_cap_counts_published_keys(backend: Backend) {
    const CAP: u32 = 3;
    let open = backend.open(NOW).unwrap();
    let store = open.store();
    let with_expiry =
        |id: &str, expires_at: i64| NewToken { expires_at: Some(expires_at), ..token(id, "shop", None, NOW) };
    // Not published, so not counted: expired over an hour ago, deleted.
    assert_eq!(store.create(&with_expiry("gone", NOW - 3600), CAP).unwrap(), CreateOutcome::Created);
    assert_eq!(store.create(&token("deleted", "shop", None, NOW), CAP).unwrap(), CreateOutcome::Created);
    assert!(store.delete("deleted", NOW).unwrap().is_some());
    // Published, so counted: live, and expired within the grace hour.
    assert_eq!(store.create(&token("live", "shop", None, NOW), CAP).unwrap(), CreateOutcome::Created);
    assert_eq!(store.create(&with_expiry("grace", NOW - 3599), CAP).unwrap(), CreateOutcome::Created);
    assert_eq!(store.create(&with_expiry("later", NOW + 60), CAP).unwrap(), CreateOutcome::Created);

    assert_eq!(store.live_keys_for_namespace("shop", NOW).unwrap().len(), CAP as usize);
    assert_eq!(store.create(&token("over", "shop", None, NOW), CAP).unwrap(), CreateOutcome::NamespaceFull);
    assert_eq!(store.get("over").unwrap(), None, "a refused create records nothing");
    assert_eq!(store.create(&token("elsewhere", "other", None, NOW), CAP).unwrap(), CreateOutcome::Created);
    // A lower cap than the keys already published refuses too; a higher one lets in.
    assert_eq!(store.create(&token("over", "shop", None, NOW), 1).unwrap(), CreateOutcome::NamespaceFull);
    assert_eq!(store.create(&token("over", "shop", None, NOW), CAP + 1).unwrap(), CreateOutcome::Created);

    // Room is made by a delete, or by a key leaving the set an hour after its token expired.
    assert!(store.delete("over", NOW).unwrap().is_some());
    assert_eq!(store.create(&token("full", "shop", None, NOW), CAP).unwrap(), CreateOutcome::NamespaceFull);
    assert!(store.delete("live", NOW).unwrap().is_some());
    assert_eq!(store.create(&token("after-delete", "shop", None, NOW), CAP).unwrap(), CreateOutcome::Created);
    assert_eq!(store.create(&token("full", "shop", None, NOW), CAP).unwrap(), CreateOutcome::NamespaceFull);
    // One second on, "grace" (expired at NOW - 3599) has been expired for an hour.
    assert_eq!(store.create(&token("after-grace", "shop", None, NOW + 1), CAP).unwrap(), CreateOutcome::Created);
    let published: Vec<String> =
        store.live_keys_for_namespace("shop", NOW + 1).unwrap().into_iter().map(|key| key.id).collect();
    assert_eq!(published, ["after-delete", "later", "after-grace"]);
}

fn concurrent_creates_never_pass_the_cap(backend: Backend) {
    const CAP: u32 = 10;
    const THREADS_PER_STORE: usize = 8;
    const TRIES_PER_THREAD: usize = 4;
    // Two stores on one database: two connections on SQLite, two pools (two replicas) on PostgreSQL.
    let (first, second) = (backend.open(NOW).unwrap(), backend.open(NOW).unwrap());
    let barrier = Barrier::new(2 * THREADS_PER_STORE);
    let outcomes: Vec<CreateOutcome> = std::thread::scope(|scope| {
        let workers: Vec<_> = [&first, &second]
            .into_iter()
            .flat_map(|open| std::iter::repeat_n(open, THREADS_PER_STORE))
            .enumerate()
            .map(|(thread, open)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    (0..TRIES_PER_THREAD)
                        .map(|round| open.store().create(&token(&format!("t{thread}-{round}"), "race", None, NOW), CAP))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().unwrap().unwrap()).collect()
    });
    let created = outcomes.iter().filter(|outcome| **outcome == CreateOutcome::Created).count();
    assert_eq!(created, CAP as usize, "{outcomes:?}");
    assert_eq!(outcomes.len(), 2 * THREADS_PER_STORE * TRIES_PER_THREAD);
    assert_eq!(first.store().live_keys_for_namespace("race", NOW).unwrap().len(), CAP as usize);
    assert_eq!(second.store().list(&namespace("race")).unwrap().len(), CAP as usize);
}

fn concurrent_deletes_revoke_once(backend: Backend) {
    const TOKENS: usize = 8;
    const THREADS_PER_STORE: usize = 4;
    let (first, second) = (backend.open(NOW).unwrap(), backend.open(NOW).unwrap());
    for n in 0..TOKENS {
        created(first.store(), &token(&format!("d{n}"), "gone", None, NOW));
    }
    let barrier = Barrier::new(2 * THREADS_PER_STORE);
    // Every thread deletes every token, racing the others: each token is deleted exactly once.
    let deleted: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = [&first, &second]
            .into_iter()
            .flat_map(|open| std::iter::repeat_n(open, THREADS_PER_STORE))
            .map(|open| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    (0..TOKENS)
                        .map(|n| open.store().delete(&format!("d{n}"), NOW + 1).map(|gone| usize::from(gone.is_some())))
                        .sum::<Result<usize, _>>()
                })
            })
            .collect();
        workers.into_iter().map(|worker| worker.join().unwrap().unwrap()).sum()
    });
    assert_eq!(deleted, TOKENS);
    assert!(second.store().live_keys_for_namespace("gone", NOW + 1).unwrap().is_empty());
    assert_eq!(first.store().list(&namespace("gone")).unwrap().len(), TOKENS, "deleted tokens stay listed");
}

#[test]
fn postgres_store_survives_lost_connections() {
    let Some(backend) = Backend::postgres(concat!(module_path!(), "::postgres_store_survives_lost_connections")) else {
        return;
    };
    let Backend::Postgres(database) = &backend else { panic!("not PostgreSQL") };
    let open = backend.open(NOW).unwrap();
    let store = open.store();
    created(store, &token("before", "shop", None, NOW));

    // Each call below finds its connection dead, and is retried on a fresh one.
    terminate_connections(database);
    assert!(store.get("before").unwrap().is_some());
    terminate_connections(database);
    created(store, &token("after", "shop", None, NOW + 1));
    terminate_connections(database);
    assert_eq!(store.delete("before", NOW + 2).unwrap().as_deref(), Some("shop"));
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
                    created(store, &token(&id, "busy", None, NOW));
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
