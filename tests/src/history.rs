//! A history of committed states and the check that every read saw a state it was allowed to.
//!
//! An oracle serializes the writes to one group of tables (a lock held from the write's start to
//! the moment its new state has been read back straight from PostgreSQL), so the group's
//! committed states form one sequence of [`Step`]s, each with the moment its write was sent and
//! the moment its acknowledgement arrived. A read through pgcached is an [`Observation`]: its
//! query, the rows it returned, when it began and ended. [`check`] evaluates each query against
//! the states (the oracle supplies the evaluation) and accepts a read only when its rows are those
//! of a state that:
//!
//! - was not replaced before the read began by a write that changed this query's answer and
//!   whose acknowledgement came before the read began (a proxied write: read your writes) or
//!   more than `bound` before it (a write made straight to PostgreSQL: bounded staleness);
//! - existed before the read ended (its write was sent before then).
//!
//! Rows that match no committed state at all (a rolled-back write, a row of another key) are
//! reported too. Comparing answers rather than rows means a write only matters to the reads whose
//! answer it changed.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One row, as text (None: NULL).
pub type Row = Vec<Option<String>>;

/// The committed rows of a group of tables, by table.
pub type State = BTreeMap<&'static str, Vec<Row>>;

/// Who made a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The state before the run.
    Initial,
    /// A write through pgcached.
    Proxied,
    /// A write straight to PostgreSQL.
    External,
}

/// One committed state of a group.
#[derive(Debug, Clone)]
pub struct Step {
    /// The rows after the write.
    pub state: Arc<State>,
    /// When the write (its COMMIT, in a transaction block) was sent.
    pub started: Instant,
    /// When its acknowledgement arrived.
    pub acked: Instant,
    /// Who wrote.
    pub source: Source,
    /// What was written, for messages.
    pub what: String,
}

/// A read through pgcached.
#[derive(Debug, Clone)]
pub struct Observation<Q> {
    /// The query and its parameters.
    pub query: Q,
    /// Its rows, sorted.
    pub rows: Vec<Row>,
    /// When it was sent.
    pub began: Instant,
    /// When its answer was complete.
    pub ended: Instant,
    /// How it was sent, for messages.
    pub how: &'static str,
}

/// The answers of one query over every step, and the steps where its answer changed.
struct Answers {
    rows: Vec<Vec<Row>>,
    changes: Vec<usize>,
}

/// Checks every read of one group against its steps (in commit order, the first being the
/// initial state); returns one message per violation. `epoch` is the start of the run, for
/// messages.
pub fn check<Q, F>(
    steps: &[Step],
    reads: &[Observation<Q>],
    eval: F,
    bound: Duration,
    epoch: Instant,
) -> Vec<String>
where
    Q: Clone + Eq + Hash + Debug,
    F: Fn(&Q, &State) -> Vec<Row>,
{
    let mut answers: HashMap<Q, Answers> = HashMap::new();
    let mut violations = Vec::new();
    let at = |t: Instant| t.saturating_duration_since(epoch).as_secs_f64() * 1000.0;
    for read in reads {
        let answer = answers.entry(read.query.clone()).or_insert_with(|| {
            let rows: Vec<Vec<Row>> = steps.iter().map(|s| eval(&read.query, &s.state)).collect();
            let changes = (1..rows.len())
                .filter(|&i| rows[i] != rows[i - 1])
                .collect();
            Answers { rows, changes }
        });
        // The last state whose write was sent before the read ended.
        let last = steps
            .partition_point(|s| s.started < read.ended)
            .saturating_sub(1);
        let required = |step: &Step| match step.source {
            Source::Initial => true,
            Source::Proxied => step.acked < read.began,
            Source::External => step.acked + bound < read.began,
        };
        let first = answer
            .changes
            .iter()
            .rev()
            .copied()
            .filter(|&c| c <= last)
            .find(|&c| required(&steps[c]))
            .unwrap_or(0);
        if (first..=last).any(|m| answer.rows[m] == read.rows) {
            continue;
        }
        let older = (0..first).rev().find(|&m| answer.rows[m] == read.rows);
        let step = &steps[first];
        violations.push(match older {
            Some(m) => format!(
                "stale read: {:?} ({}) began at {:.1} ms and returned {:?}, the answer of step {m}; \
                 step {first} ({:?}: {}) was acknowledged at {:.1} ms and answers {:?}",
                read.query,
                read.how,
                at(read.began),
                read.rows,
                step.source,
                step.what,
                at(step.acked),
                answer.rows[first],
            ),
            None => format!(
                "unknown rows: {:?} ({}) began at {:.1} ms and returned {:?}, the answer of no \
                 committed state (a rolled-back write?); expected one of {:?}",
                read.query,
                read.how,
                at(read.began),
                read.rows,
                &answer.rows[first..=last],
            ),
        });
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(v: &str) -> Arc<State> {
        let mut state = State::new();
        state.insert("t", vec![vec![Some(v.to_owned())]]);
        Arc::new(state)
    }

    fn step(v: &str, started: Instant, acked: Instant, source: Source) -> Step {
        Step {
            state: state(v),
            started,
            acked,
            source,
            what: v.to_owned(),
        }
    }

    fn read(v: &str, began: Instant, ended: Instant) -> Observation<u8> {
        Observation {
            query: 0,
            rows: vec![vec![Some(v.to_owned())]],
            began,
            ended,
            how: "test",
        }
    }

    #[test]
    fn a_read_after_an_acknowledged_write_must_see_it() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let eval = |_: &u8, s: &State| s["t"].clone();
        let steps = [
            step("a", t0, t0, Source::Initial),
            step("b", ms(10), ms(20), Source::Proxied),
            step("c", ms(30), ms(40), Source::External),
        ];
        let bound = Duration::from_millis(100);
        let ok = [
            read("a", ms(5), ms(15)),
            read("b", ms(15), ms(16)),
            read("a", ms(15), ms(16)),
            read("b", ms(25), ms(26)),
            read("b", ms(45), ms(46)),
            read("c", ms(35), ms(50)),
            read("c", ms(150), ms(151)),
        ];
        assert!(check(&steps, &ok, eval, bound, t0).is_empty());
        let stale = [read("a", ms(25), ms(26))];
        let found = check(&steps, &stale, eval, bound, t0);
        assert!(found[0].starts_with("stale read"), "{found:?}");
        let late = [read("b", ms(150), ms(151))];
        assert_eq!(check(&steps, &late, eval, bound, t0).len(), 1);
        let future = [read("c", ms(21), ms(25))];
        assert!(check(&steps, &future, eval, bound, t0)[0].starts_with("unknown rows"));
    }
}
