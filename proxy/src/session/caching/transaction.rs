//! The transaction state a cached answer depends on: whether the session is in a block, at
//! which isolation level its statements run, and what changes that.
//!
//! A cached result is what a statement starting now would see at READ COMMITTED, where each
//! statement takes a new snapshot. So a read may be answered from the cache, or fill it, only
//! when it runs at READ COMMITTED: inside a block started at that level, or outside a block
//! when the session's default is that level. REPEATABLE READ and SERIALIZABLE keep the
//! snapshot of their first statement (and SERIALIZABLE must see every read), so nothing of
//! theirs is served or filled; neither is anything whose level is not known.
//!
//! The level is learned from what the session runs, at acknowledgement: each request carries
//! the [`TxEffect`]s of its statements, applied when its ReadyForQuery arrives, and its status
//! (`I`, `T`, `E`) is the last word on whether a block is open. A request that failed may have
//! run only some of its statements: its effects then count only where they make the level
//! stronger. A default changed inside a block may be rolled back with it: it too only counts
//! where it makes the level stronger. The default a session starts with comes from its startup
//! packet, else from its role's and database's settings and the server's (an [`Inherited`]).
//!
//! Reads relayed in the same request after statements that change the state (a batch holding
//! `BEGIN ISOLATION LEVEL ...` and a read) are judged by [`Transactions::predict`], which plays
//! the request's effects so far: if the request fails before the read, the read does not run.

use crate::catalog::isolation::Inherited;
use crate::sql::transaction::DEFAULT_SETTING;
use crate::sql::{Isolation, IsolationSetting, TransactionStep};
use crate::wire::backend::TransactionStatus;

/// An isolation level, or not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// This level.
    Known(Isolation),
    /// Not known: served as the strongest.
    Unknown,
}

impl Level {
    /// The stronger of two levels (unknown is the strongest).
    pub(crate) fn max(self, other: Level) -> Level {
        match (self, other) {
            (Level::Known(a), Level::Known(b)) => Level::Known(a.max(b)),
            _ => Level::Unknown,
        }
    }

    /// True for READ COMMITTED.
    pub(crate) fn is_read_committed(self) -> bool {
        self == Level::Known(Isolation::ReadCommitted)
    }
}

/// What one relayed statement does to the transaction state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxEffect {
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...
    Step(TransactionStep),
    /// A change of an isolation setting.
    Setting(IsolationSetting),
    /// A statement whose effect on transactions is not read (CALL, DO, several statements,
    /// a function call, ...): it may end or start blocks; `names_isolation` when its text also
    /// names isolation (it may change the session's default).
    Opaque {
        /// The text names isolation, `set_config` or a reset.
        names_isolation: bool,
    },
}

/// What a read executed at a given point would run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prediction {
    /// Inside a transaction block.
    pub(crate) in_block: bool,
    /// At this level.
    pub(crate) level: Level,
}

/// The state [`TxEffect`]s change.
#[derive(Debug, Clone, Copy)]
struct State {
    /// The session's default level: `None` as inherited.
    default: Option<Level>,
    /// A block is open.
    in_block: bool,
    /// The open block's level.
    level: Level,
}

/// One session's transaction state, as acknowledged by PostgreSQL.
pub(crate) struct Transactions {
    /// The default the session started with (its startup packet); `None` inherited.
    startup: Option<Level>,
    /// The role's, database's and server's default.
    inherited: Inherited,
    state: State,
    /// The last ReadyForQuery's status.
    status: TransactionStatus,
}

impl Transactions {
    /// A session that starts with `startup` as its default (from its startup packet), else
    /// with what it inherits.
    pub(crate) fn new(startup: Option<Level>, inherited: Inherited) -> Transactions {
        Transactions {
            startup,
            inherited,
            state: State {
                default: startup,
                in_block: false,
                level: Level::Unknown,
            },
            status: TransactionStatus::Idle,
        }
    }

    /// The last acknowledged status.
    pub(crate) fn status(&self) -> TransactionStatus {
        self.status
    }

    /// Where a statement relayed after `pending` (the effects of the request so far, not yet
    /// acknowledged) would run, if the request does not fail before it. Never weaker than
    /// what the session is at now: an implicit block keeps the level it started with.
    pub(crate) fn predict(&self, pending: &[TxEffect]) -> Prediction {
        let now = self.level_of(&self.state);
        let mut state = self.state;
        for effect in pending {
            self.apply(&mut state, *effect, false);
        }
        Prediction {
            in_block: state.in_block,
            level: self.level_of(&state).max(now),
        }
    }

    /// A request's ReadyForQuery: its `effects` ran (all of them, unless it `failed`), and the
    /// session is now at `status`.
    pub(crate) fn acknowledged(
        &mut self,
        effects: &[TxEffect],
        failed: bool,
        status: TransactionStatus,
    ) {
        let mut state = self.state;
        for effect in effects {
            self.apply(&mut state, *effect, failed);
        }
        match status {
            TransactionStatus::Idle => state.in_block = false,
            TransactionStatus::InBlock | TransactionStatus::Failed => {
                if !state.in_block {
                    // A block opened by something not read here: its level is not known.
                    state.in_block = true;
                    state.level = Level::Unknown;
                }
            }
        }
        self.state = state;
        self.status = status;
    }

    /// The level a statement in `state` runs at.
    fn level_of(&self, state: &State) -> Level {
        if state.in_block {
            state.level
        } else {
            self.default_of(state)
        }
    }

    fn default_of(&self, state: &State) -> Level {
        state.default.unwrap_or_else(|| self.inherited.level())
    }

    /// Plays one effect on `state`; `uncertain` when it may not have run (its request failed):
    /// then it only makes levels stronger.
    fn apply(&self, state: &mut State, effect: TxEffect, uncertain: bool) {
        match effect {
            TxEffect::Step(TransactionStep::Begin(named)) => {
                let level = named.map_or_else(|| self.default_of(state), Level::Known);
                if !state.in_block {
                    state.in_block = true;
                    state.level = level;
                } else if uncertain {
                    state.level = state.level.max(level);
                }
                // Else a BEGIN inside a block is only a warning: the block goes on.
            }
            TxEffect::Step(TransactionStep::End { chain }) => {
                // With AND CHAIN the next block starts at once, at the same level; the status
                // says which it was.
                if !chain && !uncertain {
                    state.in_block = false;
                }
            }
            TxEffect::Step(TransactionStep::Savepoint) => {}
            TxEffect::Setting(IsolationSetting::Untouched) => {}
            TxEffect::Setting(IsolationSetting::Current(level)) => {
                if state.in_block {
                    state.level = if uncertain {
                        state.level.max(Level::Known(level))
                    } else {
                        Level::Known(level)
                    };
                }
            }
            TxEffect::Setting(IsolationSetting::Default(level)) => {
                let new = match level {
                    Some(level) => Some(Level::Known(level)),
                    None => self.startup,
                };
                state.default = if uncertain || state.in_block {
                    // It may not have run, or its block may roll it back: only stronger.
                    let old = self.default_of(state);
                    let new = new.unwrap_or_else(|| self.inherited.level());
                    Some(old.max(new))
                } else {
                    new
                };
            }
            TxEffect::Setting(IsolationSetting::Unknown) => {
                state.default = Some(Level::Unknown);
                state.level = Level::Unknown;
            }
            TxEffect::Opaque { names_isolation } => {
                state.level = Level::Unknown;
                if names_isolation {
                    state.default = Some(Level::Unknown);
                }
            }
        }
    }
}

/// The default level a startup packet sets: `default_transaction_isolation` as a parameter of
/// its own, or in `options` (`-c default_transaction_isolation=...`, `--name=value`, a
/// backslash escaping a space). `None` when it sets none; an unreadable value is [`Level::Unknown`].
pub(crate) fn startup_default(
    parameters: &std::collections::BTreeMap<String, String>,
) -> Option<Level> {
    let mut found: Option<Level> = None;
    let mut note = |name: &str, value: &str| {
        let name = name.replace('-', "_").to_ascii_lowercase();
        if name == DEFAULT_SETTING {
            found = Some(Isolation::parse(value).map_or(Level::Unknown, Level::Known));
        } else if name == "transaction_isolation" {
            found = Some(Level::Unknown);
        }
    };
    if let Some(options) = parameters.get("options") {
        let words = split_options(options);
        let mut words = words.iter();
        while let Some(word) = words.next() {
            let setting = if word == "-c" {
                words.next().map(String::as_str)
            } else if let Some(rest) = word.strip_prefix("-c") {
                Some(rest)
            } else {
                word.strip_prefix("--")
            };
            if let Some((name, value)) = setting.and_then(|s| s.split_once('=')) {
                note(name, value);
            }
        }
    }
    for (name, value) in parameters {
        if name != "options" {
            note(name, value);
        }
    }
    found
}

/// `options` split as PostgreSQL splits it: at unescaped whitespace, a backslash escaping the
/// next character.
fn split_options(options: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::Isolation::{ReadCommitted, RepeatableRead, Serializable};

    #[test]
    fn the_startup_packet_can_set_the_default() {
        let packet = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        assert_eq!(startup_default(&packet(&[("user", "app")])), None);
        assert_eq!(
            startup_default(&packet(&[(
                "options",
                "-c default_transaction_isolation=serializable"
            )])),
            Some(Level::Known(Serializable))
        );
        assert_eq!(
            startup_default(&packet(&[(
                "options",
                "-c statement_timeout=5s --default-transaction-isolation=repeatable\\ read"
            )])),
            Some(Level::Known(RepeatableRead))
        );
        assert_eq!(
            startup_default(&packet(&[(
                "default_transaction_isolation",
                "read committed"
            )])),
            Some(Level::Known(ReadCommitted))
        );
        assert_eq!(
            startup_default(&packet(&[(
                "options",
                "-cdefault_transaction_isolation=bogus"
            )])),
            Some(Level::Unknown)
        );
    }

    fn session(inherited: Isolation) -> Transactions {
        Transactions::new(None, Inherited::fixed(Level::Known(inherited)))
    }

    fn begin(level: Option<Isolation>) -> TxEffect {
        TxEffect::Step(TransactionStep::Begin(level))
    }

    const END: TxEffect = TxEffect::Step(TransactionStep::End { chain: false });

    fn rc() -> Level {
        Level::Known(ReadCommitted)
    }

    #[test]
    fn a_block_runs_at_the_level_it_names_or_the_default() {
        let mut tx = session(ReadCommitted);
        assert_eq!(tx.predict(&[]).level, rc());
        tx.acknowledged(&[begin(None)], false, TransactionStatus::InBlock);
        assert_eq!(
            tx.predict(&[]),
            Prediction {
                in_block: true,
                level: rc()
            }
        );
        tx.acknowledged(&[END], false, TransactionStatus::Idle);
        tx.acknowledged(
            &[begin(Some(RepeatableRead))],
            false,
            TransactionStatus::InBlock,
        );
        assert_eq!(tx.predict(&[]).level, Level::Known(RepeatableRead));
        tx.acknowledged(&[END], false, TransactionStatus::Idle);
        assert_eq!(tx.predict(&[]).level, rc(), "the block is over");
    }

    #[test]
    fn set_transaction_changes_the_open_block_only() {
        let mut tx = session(ReadCommitted);
        tx.acknowledged(&[begin(None)], false, TransactionStatus::InBlock);
        tx.acknowledged(
            &[TxEffect::Setting(IsolationSetting::Current(Serializable))],
            false,
            TransactionStatus::InBlock,
        );
        assert_eq!(tx.predict(&[]).level, Level::Known(Serializable));
        tx.acknowledged(&[END], false, TransactionStatus::Idle);
        assert_eq!(tx.predict(&[]).level, rc());
    }

    #[test]
    fn the_session_default_follows_set_and_reset() {
        let mut tx = session(ReadCommitted);
        let set = TxEffect::Setting(IsolationSetting::Default(Some(Serializable)));
        tx.acknowledged(&[set], false, TransactionStatus::Idle);
        assert_eq!(tx.predict(&[]).level, Level::Known(Serializable));
        assert_eq!(
            tx.predict(&[begin(None)]).level,
            Level::Known(Serializable),
            "a new block gets the default"
        );
        let reset = TxEffect::Setting(IsolationSetting::Default(None));
        tx.acknowledged(&[reset], false, TransactionStatus::Idle);
        assert_eq!(tx.predict(&[]).level, rc(), "back to the inherited default");
    }

    #[test]
    fn reset_returns_to_the_startup_default() {
        let mut tx = Transactions::new(Some(Level::Known(RepeatableRead)), Inherited::fixed(rc()));
        assert_eq!(tx.predict(&[]).level, Level::Known(RepeatableRead));
        let set = TxEffect::Setting(IsolationSetting::Default(Some(ReadCommitted)));
        tx.acknowledged(&[set], false, TransactionStatus::Idle);
        assert_eq!(tx.predict(&[]).level, rc());
        let reset = TxEffect::Setting(IsolationSetting::Default(None));
        tx.acknowledged(&[reset], false, TransactionStatus::Idle);
        assert_eq!(tx.predict(&[]).level, Level::Known(RepeatableRead));
    }

    #[test]
    fn a_default_lowered_inside_a_block_is_not_believed() {
        let mut tx = session(Serializable);
        tx.acknowledged(&[begin(None)], false, TransactionStatus::InBlock);
        let lower = TxEffect::Setting(IsolationSetting::Default(Some(ReadCommitted)));
        tx.acknowledged(&[lower], false, TransactionStatus::InBlock);
        tx.acknowledged(
            &[TxEffect::Step(TransactionStep::End { chain: false })],
            false,
            TransactionStatus::Idle,
        );
        assert_eq!(
            tx.predict(&[]).level,
            Level::Known(Serializable),
            "a ROLLBACK would have undone it"
        );
    }

    #[test]
    fn a_failed_request_only_strengthens() {
        let mut tx = session(ReadCommitted);
        tx.acknowledged(
            &[begin(Some(Serializable))],
            false,
            TransactionStatus::InBlock,
        );
        // SET TRANSACTION after a query fails; ROLLBACK TO brings the block back.
        tx.acknowledged(
            &[TxEffect::Setting(IsolationSetting::Current(ReadCommitted))],
            true,
            TransactionStatus::Failed,
        );
        tx.acknowledged(
            &[TxEffect::Step(TransactionStep::Savepoint)],
            false,
            TransactionStatus::InBlock,
        );
        assert_eq!(tx.predict(&[]).level, Level::Known(Serializable));
    }

    #[test]
    fn a_block_opened_unseen_has_an_unknown_level() {
        let mut tx = session(ReadCommitted);
        tx.acknowledged(
            &[TxEffect::Opaque {
                names_isolation: false,
            }],
            false,
            TransactionStatus::InBlock,
        );
        assert_eq!(tx.predict(&[]).level, Level::Unknown);
        tx.acknowledged(&[END], false, TransactionStatus::Idle);
        assert_eq!(tx.predict(&[]).level, rc(), "the default was not touched");
        tx.acknowledged(
            &[TxEffect::Opaque {
                names_isolation: true,
            }],
            false,
            TransactionStatus::Idle,
        );
        assert_eq!(tx.predict(&[]).level, Level::Unknown);
    }

    #[test]
    fn a_prediction_plays_the_request_so_far_and_never_weakens() {
        let tx = session(ReadCommitted);
        assert_eq!(
            tx.predict(&[begin(Some(RepeatableRead))]),
            Prediction {
                in_block: true,
                level: Level::Known(RepeatableRead)
            }
        );
        let strong = session(Serializable);
        assert_eq!(
            strong.predict(&[begin(Some(ReadCommitted))]).level,
            Level::Known(Serializable),
            "the implicit block started at SERIALIZABLE"
        );
    }

    #[test]
    fn an_inherited_default_not_yet_known_is_unknown() {
        let tx = Transactions::new(None, Inherited::fixed(Level::Unknown));
        assert_eq!(tx.predict(&[]).level, Level::Unknown);
    }
}
