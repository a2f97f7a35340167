//! The shutdown signal shared by the listener and every session.
//!
//! Shutdown has two phases. In [`Phase::Draining`] the listener stops accepting and each session
//! closes at its next idle moment (after a ReadyForQuery, with nothing in flight), telling its
//! client SQLSTATE 57P01; busy sessions finish their work. In [`Phase::Terminating`], when the
//! grace period is over, every remaining session closes at once.

use tokio::sync::watch;

/// Where shutdown stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Serving normally.
    Running,
    /// Not accepting; sessions close when idle.
    Draining,
    /// Grace period over; sessions close now.
    Terminating,
}

/// Sends phase changes to all sessions.
pub type PhaseSender = watch::Sender<Phase>;
/// A session's view of the phase.
pub type PhaseReceiver = watch::Receiver<Phase>;

/// Creates the channel, starting in [`Phase::Running`].
pub fn channel() -> (PhaseSender, PhaseReceiver) {
    watch::channel(Phase::Running)
}
