//! The [`Store`] methods for event source mappings created through Lambda's API: create, read,
//! update, settle their state, delete. They use the write connection directly between groups
//! (as queue changes do), not the group-commit writer: they are rare and not message traffic.

use super::sql::mappings as sql;
use super::{SqliteStore, StoreError};
use crate::domain::esm::{EsmSettings, EsmState, StoredEsm};

pub use sql::Change as MappingChange;

impl SqliteStore {
    /// Refuses at once if the store is broken, then runs `op`, reporting a database fault.
    async fn mapping_op<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if let Some(reason) = self.health.check() {
            return Err(StoreError::writer_stopped(&reason));
        }
        self.reported(op.await)
    }

    /// Stores a new mapping `uuid` in state `Creating`. [`MappingChange::Conflict`] if another
    /// API mapping connects the same function and queue.
    pub async fn create_mapping(
        &self,
        uuid: &str,
        settings: &EsmSettings,
    ) -> Result<MappingChange, StoreError> {
        let now = self.now();
        self.mapping_op(sql::create(&self.writer, uuid, settings, now))
            .await
    }

    /// Replaces mapping `uuid`'s settings and sets `state`, if it is still at `version`
    /// ([`MappingChange::Stale`] otherwise); raises its version.
    pub async fn update_mapping(
        &self,
        uuid: &str,
        version: i64,
        settings: &EsmSettings,
        state: EsmState,
    ) -> Result<MappingChange, StoreError> {
        let now = self.now();
        self.mapping_op(sql::update(
            &self.writer,
            uuid,
            version,
            settings,
            state,
            now,
        ))
        .await
    }

    /// Moves mapping `uuid` from state `from` to `to` if it is still at `version` and in `from`;
    /// whether it was. The version stays.
    pub async fn set_mapping_state(
        &self,
        uuid: &str,
        version: i64,
        from: EsmState,
        to: EsmState,
    ) -> Result<bool, StoreError> {
        self.mapping_op(sql::set_state(&self.writer, uuid, version, from, to))
            .await
    }

    /// Removes mapping `uuid` if it is still at `version` and `Deleting`; whether it was.
    pub async fn remove_mapping(&self, uuid: &str, version: i64) -> Result<bool, StoreError> {
        self.mapping_op(sql::remove(&self.writer, uuid, version))
            .await
    }

    /// Mapping `uuid`, if there is one.
    pub async fn mapping(&self, uuid: &str) -> Result<Option<StoredEsm>, StoreError> {
        self.reported(sql::get(&self.reader, uuid).await)
    }

    /// Every API mapping, by UUID.
    pub async fn mappings(&self) -> Result<Vec<StoredEsm>, StoreError> {
        self.reported(sql::list(&self.reader).await)
    }
}
