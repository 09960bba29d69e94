//! Message move tasks, on every backend: a task redrives a dead-letter queue's messages to their
//! original source (or a destination) in steps, each counted; one active task per source;
//! cancelling; a missing destination fails the task; the runner's signal.

use esmd::domain::message::NewMessage;
use esmd::domain::queue::{QueueName, QueueSettings, Redrive};
use esmd::domain::RejectCode;
use esmd::store::{MoveRequest, MoveStatus, MoveStep};

use super::control::Control;
use super::harness::Fixture;
use super::{bodies, rejection};
use crate::common::secs;

/// A source with a dead-letter queue holding `n` messages (dead-lettered after one receive).
pub(super) async fn dead_lettered<S: Control>(t: &Fixture<S>, n: usize) -> (QueueName, QueueName) {
    let dlq = t.queue("dlq", QueueSettings::default()).await;
    let settings = QueueSettings {
        visibility_timeout: secs(5),
        redrive: Some(Redrive {
            dead_letter_queue: dlq.clone(),
            max_receive_count: 1,
        }),
        ..Default::default()
    };
    let src = t.queue("src", settings).await;
    for i in 0..n {
        t.store
            .send(&src, vec![NewMessage::body(format!("m{i}"))])
            .await
            .unwrap();
    }
    while !t.store.receive(&src, 10, None).await.unwrap().is_empty() {}
    t.advance(secs(5));
    assert!(t.store.receive(&src, 10, None).await.unwrap().is_empty());
    assert_eq!(t.store.counts(&dlq).await.unwrap().visible, n as u64);
    (src, dlq)
}

pub(super) fn back(dlq: &QueueName) -> MoveRequest {
    MoveRequest {
        source: dlq.clone(),
        source_arn: format!("arn:aws:sqs:us-east-1:000000000000:{}", dlq.name()),
        destination: None,
        max_per_second: None,
    }
}

pub async fn a_move_task_redrives_in_counted_steps<S: Control>(t: &Fixture<S>) {
    let (src, dlq) = dead_lettered(t, 3).await;
    let mut signal = t.store.move_signal();
    signal.borrow_and_update();
    let task = t.store.start_move_task(&back(&dlq)).await.unwrap();
    assert!(signal.has_changed().unwrap(), "a start raises the signal");
    assert_eq!(
        (task.status, task.to_move, task.moved),
        (MoveStatus::Running, 3, 0)
    );
    // One active task per source.
    let again = t.store.start_move_task(&back(&dlq)).await.unwrap_err();
    assert_eq!(rejection(again).code, RejectCode::InvalidParameterValue);
    let active = t.store.active_move_tasks().await.unwrap();
    assert_eq!(active, std::slice::from_ref(&task));
    assert_eq!(
        t.store.move_step(&task.task_id, 0).await.unwrap(),
        MoveStep::Idle
    );
    assert_eq!(
        t.store.move_step(&task.task_id, 2).await.unwrap(),
        MoveStep::Moved(2)
    );
    let listed = t.store.move_tasks(&dlq, 10).await.unwrap();
    assert_eq!(
        listed[0].moved, 2,
        "the count is raised by the commit that moved them"
    );
    assert_eq!(
        t.store.move_step(&task.task_id, 10).await.unwrap(),
        MoveStep::Moved(1)
    );
    assert_eq!(
        t.store.move_step(&task.task_id, 10).await.unwrap(),
        MoveStep::Over(MoveStatus::Completed)
    );
    assert!(t.store.active_move_tasks().await.unwrap().is_empty());
    let done = t.store.move_tasks(&dlq, 10).await.unwrap().remove(0);
    assert_eq!((done.status, done.moved), (MoveStatus::Completed, 3));
    assert_eq!(t.store.counts(&dlq).await.unwrap().visible, 0);
    // Back in the source as new messages, never received, in their order.
    let got = t.store.receive(&src, 10, None).await.unwrap();
    assert_eq!(bodies(&got), ["m0", "m1", "m2"]);
    assert!(got.iter().all(|m| m.receive_count == 1));
}

pub async fn a_move_task_is_cancelled_or_fails<S: Control>(t: &Fixture<S>) {
    let (_src, dlq) = dead_lettered(t, 2).await;
    let task = t.store.start_move_task(&back(&dlq)).await.unwrap();
    let mut signal = t.store.move_signal();
    signal.borrow_and_update();
    let cancelling = t
        .store
        .cancel_move_task(&dlq, &task.task_id)
        .await
        .unwrap()
        .expect("the task");
    assert!(signal.has_changed().unwrap(), "a cancel raises the signal");
    assert_eq!(cancelling.status, MoveStatus::Cancelling);
    assert!(t
        .store
        .cancel_move_task(&dlq, "no-such")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        t.store.move_step(&task.task_id, 10).await.unwrap(),
        MoveStep::Over(MoveStatus::Cancelled)
    );
    assert_eq!(
        t.store.counts(&dlq).await.unwrap().visible,
        2,
        "nothing moved"
    );
    // A destination deleted after the start fails the task before anything moves.
    let other = t.queue("elsewhere", QueueSettings::default()).await;
    let req = esmd::store::MoveRequest {
        destination: Some((other.clone(), "arn:elsewhere".into())),
        ..back(&dlq)
    };
    let task = t.store.start_move_task(&req).await.unwrap();
    t.store.delete_queue(&other).await.unwrap();
    assert_eq!(
        t.store.move_step(&task.task_id, 10).await.unwrap(),
        MoveStep::Over(MoveStatus::Failed)
    );
    let failed = t.store.move_tasks(&dlq, 10).await.unwrap().remove(0);
    assert_eq!(failed.status, MoveStatus::Failed);
    assert!(failed.failure_reason.is_some());
    assert_eq!(
        t.store.counts(&dlq).await.unwrap().visible,
        2,
        "nothing moved"
    );
    assert_eq!(
        t.store.move_tasks(&dlq, 10).await.unwrap().len(),
        2,
        "newest first, both kept"
    );
}
