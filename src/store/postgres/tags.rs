//! Queue tags and dead-letter sources on PostgreSQL, with the SQLite store's signatures
//! (`store/queues.rs`): a tag change reads and rewrites the queue's tags under its row lock, so
//! that changes through two instances at once both hold.

use std::collections::BTreeMap;

use super::super::sql::queues::tags_json;
use super::{queues, PgStore, StoreError};
use crate::domain::queue::QueueName;
use crate::domain::Rejection;

impl PgStore {
    /// Applies `f` to the queue's tags under its row lock.
    async fn write_tags(
        &self,
        name: &QueueName,
        f: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let mut q = queues::find(&mut tx, name, true)
            .await?
            .ok_or_else(Rejection::no_queue)?;
        f(&mut q.tags);
        sqlx::query("UPDATE queues SET tags = $1 WHERE id = $2")
            .bind(tags_json(&q.tags))
            .bind(q.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds or replaces tags.
    pub async fn tag(
        &self,
        name: &QueueName,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        self.write_tags(name, |t| {
            t.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())))
        })
        .await
    }

    /// Removes tags.
    pub async fn untag(&self, name: &QueueName, keys: &[String]) -> Result<(), StoreError> {
        self.write_tags(name, |t| keys.iter().for_each(|k| drop(t.remove(k))))
            .await
    }

    /// Queues whose redrive policy names `name` as their dead-letter queue.
    pub async fn dead_letter_sources(
        &self,
        name: &QueueName,
    ) -> Result<Vec<QueueName>, StoreError> {
        let mut tx = self.begin().await?;
        queues::require(&mut tx, name).await?;
        // A dead-letter queue is in its sources' region.
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM queues WHERE region = $1 AND dead_letter_queue = $2 ORDER BY name",
        )
        .bind(name.region())
        .bind(name.name())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .filter_map(|(n,)| {
                QueueName::parse(&n)
                    .ok()
                    .map(|q| q.in_region(name.region()))
            })
            .collect())
    }
}
