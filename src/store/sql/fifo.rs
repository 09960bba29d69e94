//! FIFO mechanics: group heads, the exact in-flight blocking rule, sequence numbers.
//!
//! Within a group, messages go out strictly from the head in send order, and a group's delivery
//! stops at the first message that is not visible (docs/semantics.md §6.3). Because a group's received
//! messages are always a prefix of the group, that rule is equivalent to: a group is available
//! exactly when its head (its oldest stored message) is visible, and a receive takes the run of
//! visible messages from the head. Each FIFO message row carries `is_head`, maintained whenever a
//! group's oldest message is deleted or moved, so finding available groups is one range scan of a
//! partial index whatever the depth of the queue.

use std::collections::BTreeSet;

use super::super::error::StoreError;
use super::Tx;

/// Picks up to `want` receivable message rows of a FIFO queue, in delivery order: as many of the
/// oldest available group as possible, then the next group, each group in send order.
pub(crate) async fn pick(
    tx: &mut Tx<'_>,
    queue_id: i64,
    want: u32,
    now: i64,
) -> Result<Vec<i64>, StoreError> {
    let heads: Vec<(String,)> = sqlx::query_as(
        "SELECT group_id FROM messages WHERE queue_id = ? AND is_head = 1 AND visible_at <= ? \
         ORDER BY visible_at, id LIMIT ?",
    )
    .bind(queue_id)
    .bind(now)
    .bind(i64::from(want))
    .fetch_all(&mut *tx)
    .await?;
    let mut ids = Vec::new();
    for (group,) in heads {
        let remaining = i64::from(want) - ids.len() as i64;
        if remaining <= 0 {
            break;
        }
        let run: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT id, visible_at FROM messages WHERE queue_id = ? AND group_id = ? ORDER BY id LIMIT ?",
        )
        .bind(queue_id)
        .bind(&group)
        .bind(remaining)
        .fetch_all(&mut *tx)
        .await?;
        ids.extend(
            run.into_iter()
                .take_while(|&(_, visible_at)| visible_at <= now)
                .map(|(id, _)| id),
        );
    }
    Ok(ids)
}

/// Whether `group` currently has no stored message in the queue (so a new one is its head).
pub(crate) async fn is_empty_group(
    tx: &mut Tx<'_>,
    queue_id: i64,
    group: &str,
) -> Result<bool, StoreError> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT 1 FROM messages WHERE queue_id = ? AND group_id = ? LIMIT 1")
            .bind(queue_id)
            .bind(group)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(row.is_none())
}

/// Marks the oldest stored message of each of `groups` as its group's head (after deletions).
pub(crate) async fn rehead<'a>(
    tx: &mut Tx<'_>,
    queue_id: i64,
    groups: impl IntoIterator<Item = &'a str>,
) -> Result<(), StoreError> {
    let unique: BTreeSet<&str> = groups.into_iter().collect();
    for g in unique {
        sqlx::query(
            "UPDATE messages SET is_head = 1 WHERE id = \
             (SELECT id FROM messages WHERE queue_id = ? AND group_id = ? ORDER BY id LIMIT 1) AND is_head = 0",
        )
        .bind(queue_id)
        .bind(g)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Reserves `n` sequence numbers of a queue: large, increasing, never reused (20 digits, as
/// AWS's are). Seeded from the clock so they keep increasing even across a purge.
pub(crate) async fn next_sequences(
    tx: &mut Tx<'_>,
    queue_id: i64,
    n: usize,
    now: i64,
) -> Result<Vec<String>, StoreError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let n = n as i64;
    let (last,): (i64,) = sqlx::query_as(
        "UPDATE queues SET last_sequence = MAX(last_sequence, ?) + ? WHERE id = ? RETURNING last_sequence",
    )
    .bind(now.saturating_mul(1000))
    .bind(n)
    .bind(queue_id)
    .fetch_one(&mut *tx)
    .await?;
    Ok(((last - n + 1)..=last)
        .map(|v| (10u128.pow(19) + v as u128).to_string())
        .collect())
}
