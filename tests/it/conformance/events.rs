//! Asynchronous invocations, on every backend: stored due at once, listed soonest due first,
//! attempts counted durably, postponed, removed, and the runner's signal raised by each change.

use esmd::domain::Timestamp;

use super::control::Control;
use super::harness::Fixture;
use crate::common::T0;

pub async fn events_are_stored_attempted_postponed_and_removed<S: Control>(t: &Fixture<S>) {
    let s = &t.store;
    let mut signal = s.event_signal();
    signal.borrow_and_update();
    let e = s
        .enqueue_event(
            "r1",
            "f",
            b"{\"a\":1}".to_vec(),
            Some("ctx".into()),
            Some("trace".into()),
        )
        .await
        .unwrap();
    assert_eq!((e.attempts, e.due_at.as_millis()), (0, T0));
    assert!(
        signal.has_changed().unwrap(),
        "a new event raises the signal"
    );
    signal.borrow_and_update();
    s.enqueue_event("r2", "g", Vec::new(), None, None)
        .await
        .unwrap();
    let pending = s.pending_events().await.unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0], e, "stored as given");
    assert_eq!(s.event_attempt("r1").await.unwrap(), Some(1));
    assert_eq!(
        s.event_attempt("r1").await.unwrap(),
        Some(2),
        "counted again by the same runner"
    );
    signal.borrow_and_update();
    s.postpone_event("r1", Timestamp::from_millis(T0 + 60_000))
        .await
        .unwrap();
    assert!(
        signal.has_changed().unwrap(),
        "a postponement raises the signal"
    );
    let pending = s.pending_events().await.unwrap();
    let ids: Vec<&str> = pending.iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(ids, ["r2", "r1"], "soonest due first");
    assert_eq!(
        (pending[1].due_at.as_millis(), pending[1].attempts),
        (T0 + 60_000, 2)
    );
    signal.borrow_and_update();
    s.remove_event("r1").await.unwrap();
    assert!(signal.has_changed().unwrap(), "a removal raises the signal");
    assert_eq!(s.event_attempt("r1").await.unwrap(), None, "gone");
    assert_eq!(s.pending_events().await.unwrap().len(), 1);
}
