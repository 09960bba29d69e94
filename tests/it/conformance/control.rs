//! The rest of the SQLite `Store`'s public methods, as one trait over both backends so that the
//! suites `mappings`, `moves`, `events` and `extras` are written once: [`Control`] is
//! implemented for `Store` and `PgStore` by the same delegation to each one's inherent methods,
//! so this file also checks that `PgStore` has them with the `Store`'s parameter and return
//! types (a facade dispatching to either needs exactly that).

use std::collections::BTreeMap;
use std::time::Duration;

use esmd::domain::esm::{EsmSettings, EsmState, StoredEsm};
use esmd::domain::message::Message;
use esmd::domain::queue::QueueName;
use esmd::domain::Timestamp;
use esmd::store::{
    AsyncEvent, EntryResults, Explained, MappingChange, MoveRequest, MoveStep, MoveTask, Peeked,
    PgStore, QueueCounts, QueueStore, Store, StoreError,
};
use tokio::sync::watch;

type R<T> = Result<T, StoreError>;

/// Mappings, move tasks, asynchronous invocations, tags, dead-letter sources, peek, explain,
/// the mappings' receive and filtered delete, and the counts of every queue.
#[allow(async_fn_in_trait)]
pub trait Control: QueueStore {
    async fn create_mapping(&self, uuid: &str, s: &EsmSettings) -> R<MappingChange>;
    async fn update_mapping(
        &self,
        uuid: &str,
        version: i64,
        s: &EsmSettings,
        state: EsmState,
    ) -> R<MappingChange>;
    async fn set_mapping_state(&self, uuid: &str, v: i64, from: EsmState, to: EsmState) -> R<bool>;
    async fn remove_mapping(&self, uuid: &str, version: i64) -> R<bool>;
    async fn mapping(&self, uuid: &str) -> R<Option<StoredEsm>>;
    async fn mappings(&self) -> R<Vec<StoredEsm>>;
    async fn start_move_task(&self, req: &MoveRequest) -> R<MoveTask>;
    async fn move_tasks(&self, source: &QueueName, limit: u32) -> R<Vec<MoveTask>>;
    async fn active_move_tasks(&self) -> R<Vec<MoveTask>>;
    async fn cancel_move_task(&self, source: &QueueName, task_id: &str) -> R<Option<MoveTask>>;
    async fn move_step(&self, task_id: &str, max: u32) -> R<MoveStep>;
    fn move_signal(&self) -> watch::Receiver<u64>;
    async fn enqueue_event(
        &self,
        request_id: &str,
        function: &str,
        payload: Vec<u8>,
        client_context: Option<String>,
        trace_id: Option<String>,
    ) -> R<AsyncEvent>;
    async fn pending_events(&self) -> R<Vec<AsyncEvent>>;
    async fn event_attempt(&self, request_id: &str) -> R<Option<u32>>;
    async fn postpone_event(&self, request_id: &str, due_at: Timestamp) -> R<()>;
    async fn remove_event(&self, request_id: &str) -> R<()>;
    fn event_signal(&self) -> watch::Receiver<u64>;
    async fn tag(&self, name: &QueueName, tags: &BTreeMap<String, String>) -> R<()>;
    async fn untag(&self, name: &QueueName, keys: &[String]) -> R<()>;
    async fn dead_letter_sources(&self, name: &QueueName) -> R<Vec<QueueName>>;
    async fn peek(&self, queue: &QueueName, limit: u32) -> R<Vec<Peeked>>;
    async fn explain(&self, queue: &QueueName, message_id: &str) -> R<Explained>;
    async fn receive_wait_for_mapping(
        &self,
        mapping: &str,
        queue: &QueueName,
        max: u32,
        visibility: Option<Duration>,
        wait: Duration,
    ) -> R<Vec<Message>>;
    async fn delete_filtered(&self, queue: &QueueName, handles: &[String]) -> R<EntryResults<()>>;
    async fn all_counts(&self) -> R<Vec<(QueueName, QueueCounts)>>;
    async fn counts_scanned(&self, name: &QueueName) -> R<QueueCounts>;
    fn set_scrape_cap(&self, cap: u64);
}

/// The same delegation for both backends.
macro_rules! delegate {
    ($t:ty) => {
        impl Control for $t {
            async fn create_mapping(&self, uuid: &str, s: &EsmSettings) -> R<MappingChange> {
                <$t>::create_mapping(self, uuid, s).await
            }
            async fn update_mapping(
                &self,
                uuid: &str,
                version: i64,
                s: &EsmSettings,
                state: EsmState,
            ) -> R<MappingChange> {
                <$t>::update_mapping(self, uuid, version, s, state).await
            }
            async fn set_mapping_state(
                &self,
                uuid: &str,
                v: i64,
                from: EsmState,
                to: EsmState,
            ) -> R<bool> {
                <$t>::set_mapping_state(self, uuid, v, from, to).await
            }
            async fn remove_mapping(&self, uuid: &str, version: i64) -> R<bool> {
                <$t>::remove_mapping(self, uuid, version).await
            }
            async fn mapping(&self, uuid: &str) -> R<Option<StoredEsm>> {
                <$t>::mapping(self, uuid).await
            }
            async fn mappings(&self) -> R<Vec<StoredEsm>> {
                <$t>::mappings(self).await
            }
            async fn start_move_task(&self, req: &MoveRequest) -> R<MoveTask> {
                <$t>::start_move_task(self, req).await
            }
            async fn move_tasks(&self, source: &QueueName, limit: u32) -> R<Vec<MoveTask>> {
                <$t>::move_tasks(self, source, limit).await
            }
            async fn active_move_tasks(&self) -> R<Vec<MoveTask>> {
                <$t>::active_move_tasks(self).await
            }
            async fn cancel_move_task(
                &self,
                source: &QueueName,
                task_id: &str,
            ) -> R<Option<MoveTask>> {
                <$t>::cancel_move_task(self, source, task_id).await
            }
            async fn move_step(&self, task_id: &str, max: u32) -> R<MoveStep> {
                <$t>::move_step(self, task_id, max).await
            }
            fn move_signal(&self) -> watch::Receiver<u64> {
                <$t>::move_signal(self)
            }
            async fn enqueue_event(
                &self,
                request_id: &str,
                function: &str,
                payload: Vec<u8>,
                client_context: Option<String>,
                trace_id: Option<String>,
            ) -> R<AsyncEvent> {
                <$t>::enqueue_event(
                    self,
                    request_id,
                    function,
                    payload,
                    client_context,
                    trace_id,
                )
                .await
            }
            async fn pending_events(&self) -> R<Vec<AsyncEvent>> {
                <$t>::pending_events(self).await
            }
            async fn event_attempt(&self, request_id: &str) -> R<Option<u32>> {
                <$t>::event_attempt(self, request_id).await
            }
            async fn postpone_event(&self, request_id: &str, due_at: Timestamp) -> R<()> {
                <$t>::postpone_event(self, request_id, due_at).await
            }
            async fn remove_event(&self, request_id: &str) -> R<()> {
                <$t>::remove_event(self, request_id).await
            }
            fn event_signal(&self) -> watch::Receiver<u64> {
                <$t>::event_signal(self)
            }
            async fn tag(&self, name: &QueueName, tags: &BTreeMap<String, String>) -> R<()> {
                <$t>::tag(self, name, tags).await
            }
            async fn untag(&self, name: &QueueName, keys: &[String]) -> R<()> {
                <$t>::untag(self, name, keys).await
            }
            async fn dead_letter_sources(&self, name: &QueueName) -> R<Vec<QueueName>> {
                <$t>::dead_letter_sources(self, name).await
            }
            async fn peek(&self, queue: &QueueName, limit: u32) -> R<Vec<Peeked>> {
                <$t>::peek(self, queue, limit).await
            }
            async fn explain(&self, queue: &QueueName, message_id: &str) -> R<Explained> {
                <$t>::explain(self, queue, message_id).await
            }
            async fn receive_wait_for_mapping(
                &self,
                mapping: &str,
                queue: &QueueName,
                max: u32,
                visibility: Option<Duration>,
                wait: Duration,
            ) -> R<Vec<Message>> {
                <$t>::receive_wait_for_mapping(self, mapping, queue, max, visibility, wait).await
            }
            async fn delete_filtered(
                &self,
                queue: &QueueName,
                handles: &[String],
            ) -> R<EntryResults<()>> {
                <$t>::delete_filtered(self, queue, handles).await
            }
            async fn all_counts(&self) -> R<Vec<(QueueName, QueueCounts)>> {
                <$t>::all_counts(self).await
            }
            async fn counts_scanned(&self, name: &QueueName) -> R<QueueCounts> {
                <$t>::counts_scanned(self, name).await
            }
            fn set_scrape_cap(&self, cap: u64) {
                <$t>::set_scrape_cap(self, cap)
            }
        }
    };
}

delegate!(Store);
delegate!(PgStore);
