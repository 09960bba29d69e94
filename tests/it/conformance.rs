//! The store contract's conformance suite: every queue rule written once against
//! [`QueueStore`](esmd::store::QueueStore) (`standard`, `fifo`, `lifecycle`) and run against
//! both backends, the SQLite `Store` and the PostgreSQL `PgStore` (a test of each name in
//! `conformance::sqlite` and `conformance::postgres`); `shared` holds what only a database
//! shared by several instances can show (two `PgStore`s on one database). The backends are
//! started by `harness` (a real PostgreSQL from the distribution's packages, docs/postgres.md).
//!
//! Beyond the contract, `control` puts the rest of the `Store`'s public methods behind one
//! trait implemented for both backends, so that `mappings`, `moves`, `events` and `extras`
//! (tags, dead-letter sources, peek, explain, tombstones, all_counts) run against both too;
//! `shared_control` runs them across two `PgStore`s.

mod control;
mod deep_counts;
mod events;
mod extras;
mod fifo;
mod group_commit;
pub(crate) mod harness;
mod lifecycle;
mod mappings;
mod moves;
mod shared;
mod shared_control;
mod shared_slots;
mod standard;

use esmd::domain::message::{Message, NewMessage};
use esmd::store::StoreError;

pub(super) fn fifo_msg(group: &str, body: &str) -> NewMessage {
    NewMessage {
        group_id: Some(group.into()),
        dedup_id: Some(format!("{group}-{body}")),
        ..NewMessage::body(body)
    }
}

pub(super) fn bodies(msgs: &[Message]) -> Vec<&str> {
    msgs.iter().map(|m| m.body.as_str()).collect()
}

pub(super) fn rejection(e: StoreError) -> esmd::domain::Rejection {
    match e {
        StoreError::Rejected(r) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// One test per backend and rule: `conformance::<backend>::<rule>`.
macro_rules! conformance {
    ($($module:ident :: $rule:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $rule() {
                    let Some(f) = super::harness::sqlite().await else { return };
                    super::$module::$rule(&f).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $rule() {
                    let Some(f) = super::harness::postgres().await else { return };
                    super::$module::$rule(&f).await;
                }
            )*
        }
    };
}

conformance!(
    standard::send_receive_delete_with_attributes,
    standard::visibility_timeout_and_override,
    standard::a_requeued_message_goes_out_before_later_ones,
    standard::stale_handles_standard,
    standard::change_visibility_rules,
    standard::delays_and_counts_by_state,
    standard::validation_happens_per_entry,
    standard::queues_are_created_listed_and_deleted,
    standard::long_poll_is_woken_by_a_send,
    standard::long_poll_is_woken_by_time,
    fifo::fifo_fills_from_one_group_first_in_send_order,
    fifo::fifo_group_blocks_while_in_flight,
    fifo::fifo_redelivers_in_order_after_timeout,
    fifo::fifo_deduplication_window_and_scopes,
    fifo::content_based_deduplication_hashes_the_body_only,
    fifo::stale_handles_fifo,
    lifecycle::redrive_to_dead_letter_queue,
    lifecycle::fifo_dead_letter_keeps_order_and_unblocks_the_group,
    lifecycle::retention_in_every_state,
    lifecycle::purge_clears_everything_once_a_minute,
    mappings::mappings_are_created_updated_and_removed,
    moves::a_move_task_redrives_in_counted_steps,
    moves::a_move_task_is_cancelled_or_fails,
    events::events_are_stored_attempted_postponed_and_removed,
    extras::tags_and_dead_letter_sources,
    extras::peek_and_explain_tell_where_a_message_stands,
    extras::tombstones_of_expiry_and_dead_letters_are_swept,
    extras::all_counts_agree_with_a_scan,
    deep_counts::a_deep_queue_shows_a_full_count_renewed_in_the_background,
);
