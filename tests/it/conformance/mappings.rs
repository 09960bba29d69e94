//! Event source mappings created through Lambda's API, on every backend: create (one mapping
//! per function and queue), update on the version read, state changes the daemon settles,
//! removal only when `Deleting`, reads.

use esmd::domain::esm::{EsmSettings, EsmState, StoredEsm};
use esmd::store::MappingChange;

use super::control::Control;
use super::harness::Fixture;
use crate::common::q;

pub(super) fn settings(function: &str, queue: &str) -> EsmSettings {
    EsmSettings {
        function: function.into(),
        queue: q(queue),
        enabled: true,
        batch_size: 10,
        batching_window_secs: 0,
        max_concurrency: Some(5),
        report_batch_item_failures: true,
        filters: vec![r#"{"body":{"k":["v"]}}"#.into()],
    }
}

fn done(c: MappingChange) -> StoredEsm {
    match c {
        MappingChange::Done(m) => m,
        other => panic!("expected the change to be stored, got {other:?}"),
    }
}

pub async fn mappings_are_created_updated_and_removed<S: Control>(t: &Fixture<S>) {
    let s = &t.store;
    let a = done(
        s.create_mapping("uuid-a", &settings("f", "q1"))
            .await
            .unwrap(),
    );
    assert_eq!((a.state, a.version), (EsmState::Creating, 1));
    assert_eq!(a.settings, settings("f", "q1"), "every setting round-trips");
    // One API mapping per function and queue.
    match s
        .create_mapping("uuid-b", &settings("f", "q1"))
        .await
        .unwrap()
    {
        MappingChange::Conflict(other) => assert_eq!(other, "uuid-a"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let b = done(
        s.create_mapping("uuid-b", &settings("g", "q1"))
            .await
            .unwrap(),
    );
    // An update moving b onto a's pair conflicts too.
    assert!(matches!(
        s.update_mapping(
            "uuid-b",
            b.version,
            &settings("f", "q1"),
            EsmState::Updating
        )
        .await
        .unwrap(),
        MappingChange::Conflict(_)
    ));
    let mut changed = settings("f", "q1");
    changed.batch_size = 3;
    changed.max_concurrency = None;
    let a2 = done(
        s.update_mapping("uuid-a", 1, &changed, EsmState::Updating)
            .await
            .unwrap(),
    );
    assert_eq!(
        (a2.version, a2.state, a2.settings.batch_size),
        (2, EsmState::Updating, 3)
    );
    assert_eq!(a2.settings.max_concurrency, None);
    // An update based on the stale version is refused.
    assert!(matches!(
        s.update_mapping("uuid-a", 1, &changed, EsmState::Enabled)
            .await
            .unwrap(),
        MappingChange::Stale
    ));
    assert!(matches!(
        s.update_mapping("nope", 1, &settings("z", "q9"), EsmState::Enabled)
            .await
            .unwrap(),
        MappingChange::Stale
    ));
    // The daemon settles only the state it acted on; the version stays.
    assert!(s
        .set_mapping_state("uuid-a", 2, EsmState::Updating, EsmState::Enabled)
        .await
        .unwrap());
    assert!(!s
        .set_mapping_state("uuid-a", 2, EsmState::Updating, EsmState::Enabled)
        .await
        .unwrap());
    assert!(!s
        .set_mapping_state("uuid-a", 1, EsmState::Enabled, EsmState::Disabled)
        .await
        .unwrap());
    let read = s.mapping("uuid-a").await.unwrap().expect("stored");
    assert_eq!((read.state, read.version), (EsmState::Enabled, 2));
    let all: Vec<String> = s
        .mappings()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.uuid)
        .collect();
    assert_eq!(all, ["uuid-a", "uuid-b"], "by UUID");
    // Removal: only at the version read and once `Deleting`.
    assert!(
        !s.remove_mapping("uuid-a", 2).await.unwrap(),
        "not Deleting"
    );
    assert!(s
        .set_mapping_state("uuid-a", 2, EsmState::Enabled, EsmState::Deleting)
        .await
        .unwrap());
    assert!(
        !s.remove_mapping("uuid-a", 1).await.unwrap(),
        "stale version"
    );
    assert!(s.remove_mapping("uuid-a", 2).await.unwrap());
    assert!(s.mapping("uuid-a").await.unwrap().is_none());
    assert_eq!(s.mappings().await.unwrap().len(), 1);
}
