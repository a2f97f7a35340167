//! Transaction blocks begun, and ended, by pgcached alone.
//!
//! A READ COMMITTED `BEGIN` takes no snapshot and no lock: until the block's first statement
//! runs, PostgreSQL has nothing of it but the state "in a block". So when the session could
//! serve the block's reads from the cache, the cache path answers the BEGIN itself (with the
//! tag PostgreSQL would send and ReadyForQuery `T`) and the session's [`BeginGate`] keeps it,
//! to be sent ahead of the first statement of the block that must reach PostgreSQL. A COMMIT
//! or ROLLBACK that arrives while the BEGIN is still kept is answered here too: the block read
//! only cached results and committed nothing. Blocks at REPEATABLE READ or SERIALIZABLE, or
//! at a level not known, are relayed as they come (their snapshot is the server's to take).
//!
//! What differs from PostgreSQL, by design: `now()` and `transaction_timestamp()` in such a
//! block are the time of its first statement that reached PostgreSQL, and until then
//! `pg_stat_activity` shows the connection idle rather than idle in transaction.
//!
//! [`BeginGate`]: crate::session::begin_gate::BeginGate

use bytes::Bytes;

use super::transaction::{Level, Prediction, TxEffect};
use super::{CachePath, Mode, Outputs};
use crate::sql::{CompletionTag, Isolation, TransactionStep};
use crate::stats::QueryKind as StatementKind;
use crate::wire::backend::TransactionStatus;
use crate::wire::fixed::{
    COMPLETE_BEGIN, COMPLETE_COMMIT, COMPLETE_ROLLBACK, COMPLETE_START_TRANSACTION,
};

/// The CommandComplete frame a transaction-control statement with `tag` is answered with.
pub(super) fn completion(tag: CompletionTag) -> Bytes {
    Bytes::from_static(match tag {
        CompletionTag::Begin => COMPLETE_BEGIN,
        CompletionTag::StartTransaction => COMPLETE_START_TRANSACTION,
        CompletionTag::Commit => COMPLETE_COMMIT,
        CompletionTag::Rollback => COMPLETE_ROLLBACK,
    })
}

/// A simple Query frame carrying `sql`.
pub(super) fn query_frame(sql: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(sql.len() + 6);
    frame.push(b'Q');
    let length = u32::try_from(sql.len() + 5).unwrap_or(u32::MAX);
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(sql);
    frame.push(0);
    Bytes::from(frame)
}

impl CachePath {
    /// Answers a simple-protocol BEGIN, or the COMMIT or ROLLBACK of a block begun here, when
    /// it may be; true when answered.
    pub(super) fn answer_step_locally(
        &mut self,
        step: TransactionStep,
        sql: &[u8],
        out: &mut Outputs<'_>,
    ) -> bool {
        let tag = CompletionTag::of(sql);
        let Some(completed) = tag.map(completion) else {
            return false;
        };
        match step {
            TransactionStep::Begin(level) if self.may_begin_locally(level, tag, out) => {
                self.begin_locally(level, sql, out);
            }
            TransactionStep::End { chain: false } if self.may_end_locally(tag, out) => {
                self.end_locally(out);
            }
            _ => return false,
        }
        self.backend.metrics.query(StatementKind::Other);
        out.answer(completed);
        out.answer(self.ready_frame());
        true
    }

    /// True when a `BEGIN` naming `level` (or none), with completion `tag`, may be answered
    /// here now: the session follows its conversation, nothing is in flight or pending, no
    /// block is open, and the block would run at READ COMMITTED.
    pub(super) fn may_begin_locally(
        &self,
        level: Option<Isolation>,
        tag: Option<CompletionTag>,
        out: &Outputs<'_>,
    ) -> bool {
        let begins = matches!(
            tag,
            Some(CompletionTag::Begin | CompletionTag::StartTransaction)
        );
        begins
            && self.backend.defer_begin
            && self.mode == Mode::Following
            && out.gate.is_open()
            && self.may_answer_locally(out)
            && self.request_tx.is_empty()
            && self.transactions.status() == TransactionStatus::Idle
            && self
                .transactions
                .predict(&[TxEffect::Step(TransactionStep::Begin(level))])
                == Prediction {
                    in_block: true,
                    level: Level::Known(Isolation::ReadCommitted),
                }
    }

    /// Opens the block here: `sql` is the BEGIN's text, kept to be sent with the block's first
    /// statement that needs PostgreSQL.
    pub(super) fn begin_locally(
        &mut self,
        level: Option<Isolation>,
        sql: &[u8],
        out: &mut Outputs<'_>,
    ) {
        self.transactions.acknowledged(
            &[TxEffect::Step(TransactionStep::Begin(level))],
            false,
            TransactionStatus::InBlock,
        );
        // The BEGIN will reach PostgreSQL as a simple Query, which drops the server's unnamed
        // statement: a later Bind of the client's is preceded by its Parse again.
        self.statements.server_unnamed_dropped();
        out.gate.defer(query_frame(sql));
        self.backend.metrics.begin_deferred();
    }

    /// True when a COMMIT or ROLLBACK (`tag`) may be answered here: the block's BEGIN never
    /// left pgcached and nothing is in flight.
    pub(super) fn may_end_locally(&self, tag: Option<CompletionTag>, out: &Outputs<'_>) -> bool {
        let ends = matches!(tag, Some(CompletionTag::Commit | CompletionTag::Rollback));
        ends && self.mode == Mode::Following
            && out.gate.is_deferred()
            && self.may_answer_locally(out)
            && self.request_tx.is_empty()
    }

    /// Ends the block here: PostgreSQL never saw it.
    pub(super) fn end_locally(&mut self, out: &mut Outputs<'_>) {
        self.transactions.acknowledged(
            &[TxEffect::Step(TransactionStep::End { chain: false })],
            false,
            TransactionStatus::Idle,
        );
        self.statements.transaction_ended();
        out.gate.cancel();
        self.backend.metrics.block_ended_locally();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_frame_carries_its_text_and_length() {
        let frame = query_frame(b"BEGIN READ ONLY");
        assert_eq!(&frame[..], b"Q\0\0\0\x14BEGIN READ ONLY\0");
    }
}
