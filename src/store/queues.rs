//! The store's queue operations: create (CreateQueue's rule and `storage.max_queues`), ensure
//! (the configuration file's queues), settings, lookup through the cache, listing, delete,
//! purge, tags and dead-letter sources. Each runs on the pool, outside the group-commit writer,
//! and reports what it changed to the observer and the waiters.

use std::collections::BTreeMap;

use super::{sql, QueueInfo, SqliteStore, StoreError, StoreEvent};
use crate::domain::queue::{QueueName, QueueSettings};

impl SqliteStore {
    /// Creates a queue, or returns the existing one unchanged. The `bool` says whether it was
    /// created. The caller applies CreateQueue's attribute-comparison rule.
    ///
    /// # Errors
    /// `Rejected` if `settings` break a rule (e.g. the dead-letter queue does not exist), or
    /// `Rejected(OverLimit)` if `storage.max_queues` queues exist already.
    pub async fn create_queue(
        &self,
        name: &QueueName,
        settings: &QueueSettings,
        tags: &BTreeMap<String, String>,
    ) -> Result<(QueueInfo, bool), StoreError> {
        let now = self.now();
        let max = self.max_queues;
        self.changing(sql::queues::create(
            &self.writer,
            name,
            settings,
            tags,
            now,
            max,
        ))
        .await
        .inspect(|_| {
            self.observer.emit(StoreEvent::QueueCreated {
                queue: name.as_str(),
            })
        })
    }

    /// Creates the queue or overwrites its settings (the configuration file wins over earlier
    /// runtime changes).
    pub async fn ensure_queue(
        &self,
        name: &QueueName,
        settings: &QueueSettings,
    ) -> Result<QueueInfo, StoreError> {
        let now = self.now();
        let (info, changed) = self
            .changing(sql::queues::ensure(&self.writer, name, settings, now))
            .await?;
        self.observer.emit(StoreEvent::QueueCreated {
            queue: name.as_str(),
        });
        if changed {
            self.wake.all(name.as_str());
        }
        Ok(info)
    }

    /// Replaces a queue's settings (SetQueueAttributes after merging).
    pub async fn set_settings(
        &self,
        name: &QueueName,
        settings: &QueueSettings,
    ) -> Result<QueueInfo, StoreError> {
        let now = self.now();
        let info = self
            .changing(sql::queues::set_settings(&self.writer, name, settings, now))
            .await?;
        self.wake.all(name.as_str());
        Ok(info)
    }

    /// One queue.
    ///
    /// # Errors
    /// `Rejected(QueueDoesNotExist)` for an unknown name.
    pub async fn queue(&self, name: &QueueName) -> Result<QueueInfo, StoreError> {
        let generation = match self.queues.get(name.as_str()) {
            Ok(info) => return Ok(info),
            Err(generation) => generation,
        };
        let info = self.reported(sql::queues::get(&self.reader, name).await)?;
        self.queues.insert(generation, &info);
        Ok(info)
    }

    /// Every queue, sorted by name.
    pub async fn queues(&self) -> Result<Vec<QueueInfo>, StoreError> {
        self.reported(sql::queues::list(&self.reader).await)
    }

    /// Deletes a queue and all its messages.
    pub async fn delete_queue(&self, name: &QueueName) -> Result<(), StoreError> {
        self.freeing(|| sql::queues::delete(&self.writer, name))
            .await?;
        self.tally.remove(name.as_str());
        self.observer.emit(StoreEvent::QueueDeleted {
            queue: name.as_str(),
        });
        self.wake.all(name.as_str());
        Ok(())
    }

    /// Deletes every message of a queue in every state and clears FIFO deduplication.
    ///
    /// # Errors
    /// `Rejected(PurgeQueueInProgress)` within 60 s of the previous purge.
    pub async fn purge(&self, name: &QueueName) -> Result<(), StoreError> {
        let now = self.now();
        let purged = self
            .freeing(|| sql::queues::purge(&self.writer, name, now))
            .await?;
        self.tally
            .add(name.as_str(), -i64::try_from(purged).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Adds or replaces tags.
    pub async fn tag(
        &self,
        name: &QueueName,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        self.changing(sql::queues::tag(&self.writer, name, tags))
            .await
    }

    /// Removes tags.
    pub async fn untag(&self, name: &QueueName, keys: &[String]) -> Result<(), StoreError> {
        self.changing(sql::queues::untag(&self.writer, name, keys))
            .await
    }

    /// Queues whose redrive policy names `name` as their dead-letter queue.
    pub async fn dead_letter_sources(
        &self,
        name: &QueueName,
    ) -> Result<Vec<QueueName>, StoreError> {
        self.reported(sql::queues::dead_letter_sources(&self.reader, name).await)
    }
}
