//! Mappings, move tasks, asynchronous invocations and their signals across instances: two
//! `PgStore`s on one database. A mapping created through one is seen by the other; a move task
//! is run by one instance only (the other's steps give it up, and it is not listed as theirs to
//! run until the lease runs out), so no message is moved twice; an event is attempted by one
//! instance at a time; a start, a cancel or an event change on one instance raises the signal
//! on the other (LISTEN/NOTIFY; the manual clock never moves by itself).

use std::collections::HashSet;

use esmd::domain::message::NewMessage;
use esmd::domain::queue::QueueSettings;
use esmd::store::{MoveStatus, MoveStep, PgStore, QueueStore};
use tokio::sync::watch;

use super::harness::{self, Fixture, Keep};
use super::mappings::settings;
use super::moves::{back, dead_lettered};
use crate::common::{secs, within};

async fn two() -> Option<(Fixture<PgStore>, PgStore)> {
    let f = harness::postgres().await?;
    let Keep::Database(options) = &f.keep else {
        unreachable!("a PostgreSQL fixture keeps its database's options")
    };
    let other = harness::open(options, &f.clock).await;
    Some((f, other))
}

/// Waits (bounded) for `signal` to change.
async fn raised(signal: &mut watch::Receiver<u64>, what: &str) {
    within(secs(10), what, signal.changed())
        .await
        .expect("the store is open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_created_on_one_instance_is_seen_by_the_other() {
    let Some((a, b)) = two().await else { return };
    a.store
        .create_mapping("u1", &settings("f", "q"))
        .await
        .unwrap();
    let seen = b.mapping("u1").await.unwrap().expect("seen through b");
    assert_eq!(seen.settings, settings("f", "q"));
    assert!(matches!(
        b.create_mapping("u2", &settings("f", "q")).await.unwrap(),
        esmd::store::MappingChange::Conflict(u) if u == "u1"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_task_is_run_by_one_instance_only() {
    let Some((a, b)) = two().await else { return };
    const N: usize = 60;
    let (src, dlq) = dead_lettered(&a, N).await;
    let task = a.store.start_move_task(&back(&dlq)).await.unwrap();
    // Both instances' runners step the task at once, until it is over for them.
    let mut runners = Vec::new();
    for store in [a.store.clone(), b.clone()] {
        let id = task.task_id.clone();
        runners.push(tokio::spawn(async move {
            let mut moved = 0;
            loop {
                match store.move_step(&id, 5).await.unwrap() {
                    MoveStep::Moved(n) => moved += n,
                    MoveStep::Idle => tokio::task::yield_now().await,
                    MoveStep::Over(status) => return (moved, status),
                }
            }
        }));
    }
    let mut results = Vec::new();
    for r in runners {
        results.push(within(secs(60), "the runners", r).await.unwrap());
    }
    let total: u64 = results.iter().map(|(m, _)| m).sum();
    assert_eq!(total, N as u64, "every message moved once");
    assert!(
        results.iter().any(|(m, _)| *m == N as u64),
        "one instance moved them all, the other none: {results:?}"
    );
    let got = a.store.receive(&src, 10, None).await.unwrap();
    assert_eq!(got.len(), 10);
    let c = a.store.counts(&src).await.unwrap();
    assert_eq!(c.visible + c.in_flight, N as u64, "no message moved twice");
    let done = b.move_tasks(&dlq, 1).await.unwrap().remove(0);
    assert_eq!((done.status, done.moved), (MoveStatus::Completed, N as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_of_a_stopped_instance_is_taken_over_after_its_lease() {
    let Some((a, b)) = two().await else { return };
    let (_src, dlq) = dead_lettered(&a, 3).await;
    let task = a.store.start_move_task(&back(&dlq)).await.unwrap();
    assert_eq!(
        b.active_move_tasks().await.unwrap().len(),
        1,
        "nobody runs it yet"
    );
    assert_eq!(
        a.store.move_step(&task.task_id, 1).await.unwrap(),
        MoveStep::Moved(1)
    );
    // a runs it: not b's to run.
    assert!(b.active_move_tasks().await.unwrap().is_empty());
    assert_eq!(
        b.move_step(&task.task_id, 10).await.unwrap(),
        MoveStep::Over(MoveStatus::Running)
    );
    // a stops stepping; once its lease runs out b takes the task over.
    a.advance(secs(31));
    assert_eq!(b.active_move_tasks().await.unwrap().len(), 1);
    assert_eq!(
        b.move_step(&task.task_id, 10).await.unwrap(),
        MoveStep::Moved(2)
    );
    assert_eq!(
        a.store.move_step(&task.task_id, 10).await.unwrap(),
        MoveStep::Over(MoveStatus::Running),
        "now b's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_attempted_by_one_instance_at_a_time() {
    let Some((a, b)) = two().await else { return };
    a.store
        .enqueue_event("r", "f", b"{}".to_vec(), None, None)
        .await
        .unwrap();
    let (x, y) = tokio::join!(a.store.event_attempt("r"), b.event_attempt("r"));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(
        HashSet::from([x, y]),
        HashSet::from([Some(1), None]),
        "one attempt, by one instance"
    );
    let (runner, other) = if x.is_some() {
        (&a.store, &b)
    } else {
        (&b, &a.store)
    };
    // The other instance sees it due when the runner's lease runs out, and cannot attempt it.
    let seen = other.pending_events().await.unwrap().remove(0);
    assert!(
        seen.due_at > a.clock.now(),
        "not due for the other instance"
    );
    assert_eq!(other.event_attempt("r").await.unwrap(), None);
    // A retry ends the lease: either may run it then.
    runner.postpone_event("r", a.clock.now()).await.unwrap();
    assert_eq!(other.event_attempt("r").await.unwrap(), Some(2));
    assert_eq!(runner.event_attempt("r").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_on_one_instance_wake_the_other() {
    let Some((a, b)) = two().await else { return };
    let (mut moves, mut events) = (b.move_signal(), b.event_signal());
    moves.borrow_and_update();
    events.borrow_and_update();
    let dlq = a.queue("sig-dlq", QueueSettings::default()).await;
    a.store
        .send(&dlq, vec![NewMessage::body("x")])
        .await
        .unwrap();
    let task = a.store.start_move_task(&back(&dlq)).await.unwrap();
    raised(&mut moves, "b's move signal to be raised by a's start").await;
    a.store.cancel_move_task(&dlq, &task.task_id).await.unwrap();
    raised(&mut moves, "b's move signal to be raised by a's cancel").await;
    a.store
        .enqueue_event("r", "f", Vec::new(), None, None)
        .await
        .unwrap();
    raised(&mut events, "b's event signal to be raised by a's enqueue").await;
    a.store.remove_event("r").await.unwrap();
    raised(&mut events, "b's event signal to be raised by a's removal").await;
}
