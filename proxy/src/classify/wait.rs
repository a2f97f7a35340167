//! Waiting for the catalog's verdict on statements being judged.
//!
//! The first execution of a new statement text finds it [`Class::Classifying`] (a write,
//! [`super::WriteClass::Judging`]): its catalog step runs in the background. Relaying it right
//! away would cost a cache fill, and guessing what it does would cost more: a session calling
//! a function not yet judged must be treated as if that function changed its settings, and a
//! write not yet judged invalidates the whole database. So the session waits
//! for the verdict instead, bounded by [`JUDGE_WAIT`] (or [`EFFECTS_WAIT`] when the verdict
//! decides what the session's state becomes): the catalog usually answers within a round trip
//! or two. Each landed resolution wakes every waiter, which looks again; a
//! statement that found no free resolver is started again by that look.

use std::sync::Arc;
use std::time::Duration;

use super::{Class, Classifier, Protocol};

/// Longest a session waits for a read's verdict before relaying it uncached.
pub(crate) const JUDGE_WAIT: Duration = Duration::from_millis(200);

/// Longest a session waits for the verdict on a read that calls functions. Relaying it
/// unjudged costs more than a fill: the session must then be treated as if those functions
/// changed its settings and isolation, so it shares no entries and serves nothing inside
/// blocks until it ends. Worth waiting for a slow catalog connection.
pub(crate) const EFFECTS_WAIT: Duration = Duration::from_secs(2);

/// How long to wait for the verdicts on statements of these classes: [`EFFECTS_WAIT`] when one
/// of them calls functions, else [`JUDGE_WAIT`].
pub(crate) fn limit_for<'a>(classes: impl IntoIterator<Item = &'a Class>) -> Duration {
    let calls_functions = classes.into_iter().any(|class| {
        matches!(
            class,
            Class::Classifying {
                calls_functions: true
            }
        )
    });
    if calls_functions {
        EFFECTS_WAIT
    } else {
        JUDGE_WAIT
    }
}

impl Classifier {
    /// Completes once none of `statements` (texts as they arrived by their protocol) is being
    /// judged any more in `database`. Never completes by itself when the catalog is stuck: the
    /// caller bounds it with [`JUDGE_WAIT`].
    pub(crate) async fn until_judged(
        self: Arc<Self>,
        database: Arc<str>,
        statements: Vec<(String, Protocol)>,
    ) {
        loop {
            let landed = self.judged.notified();
            tokio::pin!(landed);
            landed.as_mut().enable();
            let pending = statements
                .iter()
                .any(|(sql, protocol)| self.classify(&database, sql, *protocol).is_being_judged());
            if !pending {
                return;
            }
            landed.await;
        }
    }
}
