//! Group commit on PostgreSQL: concurrent sends share transactions (one transaction id per
//! group, read from the server's snapshot, which a read-only look does not advance), as do
//! concurrent deletes; an operation on a queue that does not exist is refused alone while the
//! group it arrived with is stored; and nothing is lost or stored twice.

use std::collections::HashSet;

use esmd::domain::message::NewMessage;
use esmd::domain::queue::QueueSettings;
use esmd::domain::RejectCode;
use esmd::store::{PgStore, QueueStore};
use sqlx::postgres::PgPool;

use super::harness::{self, Fixture, Keep};
use super::rejection;
use crate::common::{q, secs, within};

/// Transaction ids assigned so far on the server: each write transaction takes one.
async fn next_xid(pool: &PgPool) -> i64 {
    let (xid,): (i64,) =
        sqlx::query_as("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
            .fetch_one(pool)
            .await
            .expect("read the server's next transaction id");
    xid
}

/// A PostgreSQL fixture and a pool of the test's own on its database.
async fn with_pool() -> Option<(Fixture<PgStore>, PgPool)> {
    let f = harness::postgres().await?;
    let Keep::Database(options) = &f.keep else {
        unreachable!("a PostgreSQL fixture keeps its database's options")
    };
    let pool = PgPool::connect_with((**options).clone()).await.unwrap();
    Some((f, pool))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_and_deletes_share_transactions() {
    let Some((f, pool)) = with_pool().await else {
        return;
    };
    let name = f.queue("grouped", QueueSettings::default()).await;
    const SENDS: usize = 64;
    const PER_SEND: usize = 5;

    let before = next_xid(&pool).await;
    let mut sends = Vec::new();
    for i in 0..SENDS {
        let (store, name) = (f.store.clone(), name.clone());
        sends.push(tokio::spawn(async move {
            let batch = (0..PER_SEND)
                .map(|j| NewMessage::body(format!("m{i}-{j}")))
                .collect();
            store.send(&name, batch).await
        }));
    }
    // Sends to a queue that does not exist, in the same burst: refused, and alone.
    let mut missing = Vec::new();
    for _ in 0..4 {
        let store = f.store.clone();
        missing.push(tokio::spawn(async move {
            store
                .send(&q("missing"), vec![NewMessage::body("lost")])
                .await
        }));
    }
    for s in sends {
        let results = within(secs(60), "a send", s).await.unwrap().unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }
    for s in missing {
        let e = within(secs(60), "a send", s).await.unwrap().unwrap_err();
        assert_eq!(rejection(e).code, RejectCode::QueueDoesNotExist);
    }
    let send_xids = next_xid(&pool).await - before;
    assert!(
        send_xids < (SENDS / 2) as i64,
        "{SENDS} concurrent sends took {send_xids} transactions; they should share a few"
    );
    assert_eq!(
        f.store.counts(&name).await.unwrap().visible,
        (SENDS * PER_SEND) as u64
    );

    // Receive everything, then delete it in concurrent batches of five.
    let mut handles = Vec::new();
    let mut bodies = HashSet::new();
    loop {
        let got = f.store.receive(&name, 10, None).await.unwrap();
        if got.is_empty() {
            break;
        }
        for m in got {
            assert!(bodies.insert(m.body.clone()), "{} received twice", m.body);
            handles.push(m.receipt_handle);
        }
    }
    assert_eq!(bodies.len(), SENDS * PER_SEND);
    let before = next_xid(&pool).await;
    let mut deletes = Vec::new();
    for chunk in handles.chunks(5) {
        let (store, name, chunk) = (f.store.clone(), name.clone(), chunk.to_vec());
        deletes.push(tokio::spawn(
            async move { store.delete(&name, &chunk).await },
        ));
    }
    let n = deletes.len();
    for d in deletes {
        let results = within(secs(60), "a delete", d).await.unwrap().unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }
    let delete_xids = next_xid(&pool).await - before;
    assert!(
        delete_xids < (n / 2) as i64,
        "{n} concurrent deletes took {delete_xids} transactions; they should share a few"
    );
    let counts = f.store.counts(&name).await.unwrap();
    assert_eq!((counts.visible, counts.in_flight), (0, 0), "{counts:?}");
    println!("{SENDS} sends in {send_xids} transactions, {n} deletes in {delete_xids}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_error_fails_only_the_operation_that_met_it() {
    let Some((f, pool)) = with_pool().await else {
        return;
    };
    // The database refuses one body, as a full disk or a broken row would refuse a statement.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
         IF NEW.body = 'poison' THEN RAISE EXCEPTION 'poison refused'; END IF; RETURN NEW; \
         END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER refuse_poison BEFORE INSERT ON messages FOR EACH ROW \
         EXECUTE FUNCTION refuse_poison();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let name = f.queue("faulty", QueueSettings::default()).await;
    const GOOD: usize = 40;
    let mut sends = Vec::new();
    for i in 0..=GOOD {
        let (store, name) = (f.store.clone(), name.clone());
        let body = if i == GOOD / 2 {
            "poison".to_owned()
        } else {
            format!("good {i}")
        };
        sends.push(tokio::spawn(async move {
            (
                body.clone(),
                store.send(&name, vec![NewMessage::body(body)]).await,
            )
        }));
    }
    for s in sends {
        let (body, result) = within(secs(60), "a send", s).await.unwrap();
        match (body.as_str(), result) {
            ("poison", Err(esmd::store::StoreError::Database { .. })) => {}
            ("poison", other) => panic!("the refused send was answered {other:?}"),
            (_, Ok(results)) => assert!(results.iter().all(Result::is_ok), "{results:?}"),
            (body, Err(e)) => panic!("{body} failed with the other's fault: {e}"),
        }
    }
    let mut stored = HashSet::new();
    loop {
        let got = f.store.receive(&name, 10, None).await.unwrap();
        if got.is_empty() {
            break;
        }
        stored.extend(got.into_iter().map(|m| m.body));
    }
    assert_eq!(stored.len(), GOOD, "every good send stored once");
    assert!(!stored.contains("poison"));
}
