//! A mapping's retry back-off (`retry_backoff`, an esmd extension; docs/semantics.md §4): how
//! long a message whose invocation failed stays invisible before it is retried, growing with
//! its receive count instead of the queue's fixed visibility timeout. Pure: the random draw for
//! jitter is the caller's.

use std::time::Duration;

/// `initial × multiplier^(receives − 1)`, capped at `max`; with `jitter`, a random delay up to
/// that.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay after the first receive.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// The factor between one receive's delay and the next's (at least 1).
    pub multiplier: f64,
    /// Whether the delay is drawn at random between zero and the computed one ("full jitter").
    pub jitter: bool,
}

impl Backoff {
    /// The delay before a message received `receives` times (1 for the first receive) becomes
    /// visible again. `draw` is a random number in `[0, 1)`, used only with jitter.
    pub fn delay(&self, receives: u32, draw: f64) -> Duration {
        let exp = i32::try_from(receives.saturating_sub(1)).unwrap_or(i32::MAX);
        let grown = self.initial.as_secs_f64() * self.multiplier.powi(exp);
        let capped = if grown.is_finite() && grown < self.max.as_secs_f64() {
            Duration::from_secs_f64(grown)
        } else {
            self.max
        };
        if self.jitter {
            capped.mul_f64(draw.clamp(0.0, 1.0))
        } else {
            capped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(jitter: bool) -> Backoff {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(15 * 60),
            multiplier: 2.0,
            jitter,
        }
    }

    #[test]
    fn grows_by_the_multiplier_and_stops_at_max() {
        let b = backoff(false);
        let secs: Vec<u64> = (1..=12).map(|n| b.delay(n, 0.5).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]);
        assert_eq!(b.delay(0, 0.5), Duration::from_secs(1), "as the first");
        assert_eq!(b.delay(u32::MAX, 0.5), b.max, "no overflow");
    }

    #[test]
    fn jitter_draws_up_to_the_capped_delay() {
        let b = backoff(true);
        assert_eq!(b.delay(3, 0.0), Duration::ZERO);
        assert_eq!(b.delay(3, 0.5), Duration::from_secs(2));
        assert_eq!(b.delay(20, 0.5), Duration::from_secs(450));
        assert!(b.delay(20, 0.999_999) < b.max);
    }

    #[test]
    fn a_multiplier_of_one_is_a_fixed_delay() {
        let b = Backoff {
            multiplier: 1.0,
            ..backoff(false)
        };
        assert_eq!(b.delay(50, 0.0), Duration::from_secs(1));
    }
}
