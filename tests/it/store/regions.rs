//! Queues per region in the store (docs/architecture.md §2.2): a database written before
//! regions existed keeps every queue, message, deduplication entry, tombstone and mapping through
//! migration 0005's rebuild of `queues` (ids kept, foreign keys still enforced after it); and
//! queues stored under the configured default region's name are adopted into the default region.

use std::collections::BTreeMap;
use std::path::Path;

use esmd::clock::Clock;
use esmd::domain::message::NewMessage;
use esmd::domain::queue::QueueSettings;
use esmd::domain::Timestamp;
use esmd::store::{Store, StoreOptions};
use sqlx::Connection as _;

use super::bodies;
use crate::common::{q, storage, T0};

/// Opens the file at `dir` with `default_region` configured.
async fn open(dir: &tempfile::TempDir, default_region: Option<&str>) -> Store {
    let opts = StoreOptions {
        default_region: default_region.map(str::to_owned),
        ..Default::default()
    };
    Store::open_with(
        &storage(dir),
        Clock::manual(Timestamp::from_millis(T0)),
        opts,
    )
    .await
    .expect("open store")
}

/// Writes a database as esmd wrote it before regions: the migrations up to 0003 (the files of
/// this repository, so their checksums are the ones esmd recorded), and rows of every table
/// that refers to a queue.
async fn old_database(db: &Path) {
    let old = tempfile::tempdir().expect("temp dir");
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for file in [
        "0001_init.sql",
        "0002_tombstones.sql",
        "0003_event_source_mappings.sql",
    ] {
        std::fs::copy(migrations.join(file), old.path().join(file)).expect("copy a migration");
    }
    let migrator = sqlx::migrate::Migrator::new(old.path())
        .await
        .expect("migrations");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{}?mode=rwc", db.display()))
        .await
        .expect("create");
    migrator.run(&mut conn).await.expect("the old schema");
    let queue = |id: i64, name: &str, dlq: Option<&str>| {
        sqlx::query(
            "INSERT INTO queues (id, name, fifo, visibility_timeout_ms, delay_ms, retention_ms, \
             max_message_size, receive_wait_ms, dead_letter_queue, max_receive_count, \
             content_based_dedup, dedup_scope, fifo_throughput_limit, created_at, last_modified_at) \
             VALUES (?, ?, 0, 30000, 0, 345600000, 262144, 0, ?, ?, 0, 'queue', 'perQueue', ?, ?)",
        )
        .bind(id)
        .bind(name.to_owned())
        .bind(dlq.map(str::to_owned))
        .bind(dlq.map(|_| 5_i64))
        .bind(T0)
        .bind(T0)
    };
    queue(9, "orders-dlq", None)
        .execute(&mut conn)
        .await
        .unwrap();
    queue(7, "orders", Some("orders-dlq"))
        .execute(&mut conn)
        .await
        .unwrap();
    for (id, body) in [(1, "first"), (2, "second")] {
        sqlx::query(
            "INSERT INTO messages (id, queue_id, message_id, body, md5_of_body, sent_at, \
             retain_from, visible_at, receipt, received_at, first_receive_at) \
             VALUES (?, 7, ?, ?, 'md5', ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(format!("m{id}"))
        .bind(body)
        .bind(T0)
        .bind(T0)
        .bind(T0)
        .bind(i64::MIN)
        .bind(T0)
        .bind(T0)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO dedup (queue_id, scope, dedup_id, message_id, expires_at) \
         VALUES (7, '', 'd', 'm1', ?)",
    )
    .bind(T0 + 300_000)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO tombstones (at, queue_id, message_id, state, receive_count) \
         VALUES (?, 7, 'm0', 1, 1)",
    )
    .bind(T0)
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.expect("close");
}

/// Rows of `table` referring to queue 7.
async fn rows_of_7(db: &Path, table: &str) -> i64 {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.display()))
        .await
        .expect("open");
    let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table} WHERE queue_id = 7"))
        .fetch_one(&mut conn)
        .await
        .expect("count");
    conn.close().await.expect("close");
    n
}

#[tokio::test]
async fn a_database_from_before_regions_keeps_its_queues_and_messages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = storage(&dir).path;
    old_database(&db).await;

    let store = open(&dir, Some("us-east-1")).await;
    let orders = store.queue(&q("orders")).await.expect("the queue is kept");
    assert_eq!(orders.id, 7, "its id is kept");
    assert_eq!(orders.name.region(), "", "it is the default region's");
    let redrive = orders.settings.redrive.expect("its redrive policy is kept");
    assert_eq!(redrive.dead_letter_queue, q("orders-dlq"));
    assert_eq!(store.queue(&q("orders-dlq")).await.unwrap().id, 9);
    assert_eq!(store.counts(&q("orders")).await.unwrap().visible, 2);
    let got = store.receive(&q("orders"), 10, None).await.unwrap();
    assert_eq!(bodies(&got), vec!["first", "second"]);
    store.close().await;
    assert_eq!(rows_of_7(&db, "messages").await, 2);
    assert_eq!(rows_of_7(&db, "dedup").await, 1);
    assert_eq!(rows_of_7(&db, "tombstones").await, 1);

    // The name is now free in another region, and the default region's queue is not it.
    let store = open(&dir, Some("us-east-1")).await;
    let away = q("orders").in_region("eu-west-1");
    let (created, new) = store
        .create_queue(&away, &QueueSettings::default(), &BTreeMap::new())
        .await
        .unwrap();
    assert!(new);
    assert_ne!(created.id, 7);
    assert_eq!(created.name, away);
    assert_eq!(store.counts(&away).await.unwrap().visible, 0);

    // The other tables refer to the rebuilt table, foreign keys on: deleting the queue
    // cascades to its deduplication entries and tombstones.
    store.delete_queue(&q("orders")).await.unwrap();
    store.close().await;
    assert_eq!(rows_of_7(&db, "messages").await, 0);
    assert_eq!(rows_of_7(&db, "dedup").await, 0);
    assert_eq!(rows_of_7(&db, "tombstones").await, 0);
}

#[tokio::test]
async fn queues_stored_under_the_default_regions_name_are_the_default_regions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = QueueSettings::default();
    let none = BTreeMap::new();
    let store = open(&dir, Some("us-east-1")).await;
    let a = q("a").in_region("eu-west-1");
    let b = q("b").in_region("eu-west-1");
    for name in [&a, &b, &q("b")] {
        store.create_queue(name, &settings, &none).await.unwrap();
    }
    store
        .send(&a, vec![NewMessage::body("in eu-west-1")])
        .await
        .unwrap();
    store
        .send(&q("b"), vec![NewMessage::body("old default")])
        .await
        .unwrap();
    store.close().await;

    // eu-west-1 becomes the default region: its queue `a` is now named plainly, with its message.
    let store = open(&dir, Some("eu-west-1")).await;
    assert_eq!(store.counts(&q("a")).await.unwrap().visible, 1);
    assert!(store.queue(&a).await.is_err());
    // `b` exists plainly already (the old default region's): eu-west-1's `b` is left as stored.
    let got = store.receive(&q("b"), 10, None).await.unwrap();
    assert_eq!(bodies(&got), vec!["old default"]);
    assert!(store.queue(&b).await.is_ok());
    store.close().await;
}
