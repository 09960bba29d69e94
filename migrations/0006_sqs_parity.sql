-- Queue attributes AWS reports back but esmd does not enforce: the access policy (Policy, also
-- built by AddPermission/RemovePermission) and server-side encryption settings. And the
-- deduplication scope a FIFO queue applies, fixed when the queue is created: AWS keeps
-- deduplicating with it after SetQueueAttributes changes DeduplicationScope (docs/semantics.md).
-- Append new migrations; never edit this file once released.

ALTER TABLE queues ADD COLUMN policy TEXT;
ALTER TABLE queues ADD COLUMN sse TEXT NOT NULL DEFAULT 'sqs';        -- 'sqs', 'kms' or 'off'
ALTER TABLE queues ADD COLUMN kms_master_key_id TEXT;                 -- set when sse = 'kms'
ALTER TABLE queues ADD COLUMN kms_data_key_reuse_s INTEGER NOT NULL DEFAULT 300;
ALTER TABLE queues ADD COLUMN dedup_applied TEXT;                     -- NULL: dedup_scope

-- Standard receive: leases that ran out first, then the rest, each by visible_at. AWS hands a
-- message whose visibility timeout ended out before messages sent after it was first received
-- (docs/semantics.md §6.3); with in_flight before visible_at both are one index range.
DROP INDEX messages_claim;
CREATE INDEX messages_claim ON messages (queue_id, in_flight, visible_at);
