//! Event source mappings created through Lambda's API (CreateEventSourceMapping): their settings
//! as the API accepted them ([`EsmSettings`]), their lifecycle [`EsmState`] with AWS's state
//! names, and the stored record ([`StoredEsm`]). Mappings of the configuration file are not
//! these; they live in `config`.

use crate::domain::queue::QueueName;
use crate::domain::Timestamp;

/// The settings of one API mapping, already validated by the API layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsmSettings {
    /// The function invoked: a key of `[functions]`.
    pub function: String,
    /// The queue polled.
    pub queue: QueueName,
    /// `Enabled`.
    pub enabled: bool,
    /// `BatchSize`.
    pub batch_size: u32,
    /// `MaximumBatchingWindowInSeconds`.
    pub batching_window_secs: u32,
    /// `ScalingConfig.MaximumConcurrency`; `None` when not set (esmd runs 5 at most then).
    pub max_concurrency: Option<u32>,
    /// `FunctionResponseTypes` holds `ReportBatchItemFailures`.
    pub report_batch_item_failures: bool,
    /// `FilterCriteria.Filters[].Pattern`, as written (each compiles).
    pub filters: Vec<String>,
}

/// Where a mapping is in its life, with Lambda's words. The API sets a transitional state
/// (`Creating`, `Enabling`, `Disabling`, `Updating`, `Deleting`); the daemon settles it once its
/// pollers follow (`Enabled`, `Disabled`, or the row is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EsmState {
    /// Created; the daemon has not started it yet.
    Creating,
    /// Being turned on.
    Enabling,
    /// Polling.
    Enabled,
    /// Being turned off.
    Disabling,
    /// Not polling.
    Disabled,
    /// Settings changed; the daemon has not restarted it yet.
    Updating,
    /// Deleted; the daemon has not stopped it yet.
    Deleting,
}

impl EsmState {
    /// Every state, for parsing.
    const ALL: [EsmState; 7] = [
        EsmState::Creating,
        EsmState::Enabling,
        EsmState::Enabled,
        EsmState::Disabling,
        EsmState::Disabled,
        EsmState::Updating,
        EsmState::Deleting,
    ];

    /// Lambda's name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            EsmState::Creating => "Creating",
            EsmState::Enabling => "Enabling",
            EsmState::Enabled => "Enabled",
            EsmState::Disabling => "Disabling",
            EsmState::Disabled => "Disabled",
            EsmState::Updating => "Updating",
            EsmState::Deleting => "Deleting",
        }
    }

    /// The state named `s`, if any.
    pub fn parse(s: &str) -> Option<EsmState> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the daemon still has to act on this state (Lambda refuses updates and deletes
    /// then, with `ResourceInUseException`).
    pub fn is_transitional(self) -> bool {
        !matches!(self, EsmState::Enabled | EsmState::Disabled)
    }

    /// The state the daemon settles a mapping in once its pollers follow its settings.
    pub fn settled(enabled: bool) -> EsmState {
        if enabled {
            EsmState::Enabled
        } else {
            EsmState::Disabled
        }
    }
}

/// One stored API mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEsm {
    /// Its id (a v4 UUID).
    pub uuid: String,
    /// What it does.
    pub settings: EsmSettings,
    /// Where it is in its life.
    pub state: EsmState,
    /// When the API last changed it.
    pub last_modified: Timestamp,
    /// Raised by every change through the API, so that a write based on a stale read is refused
    /// and the daemon settles only the version it acted on.
    pub version: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_only_enabled_and_disabled_are_settled() {
        for s in EsmState::ALL {
            assert_eq!(EsmState::parse(s.as_str()), Some(s));
            assert_eq!(
                s.is_transitional(),
                s != EsmState::Enabled && s != EsmState::Disabled
            );
        }
        assert_eq!(EsmState::parse("enabled"), None);
        assert_eq!(EsmState::settled(false), EsmState::Disabled);
    }
}
