//! Whether a result read from the shared tier may be served here: the rule ARCHITECTURE.md
//! argues ("The shared tier"), in one function.
//!
//! A result stamped at position `F` reflects every transaction committed up to `F`, with one
//! exception (ARCHITECTURE.md, "Visibility"). It is served only if this pgcached knows of no
//! change at or after `F` to anything the read depends on:
//! its stream is running and reported everything after `F` (or its stream started after `F`
//! and the shared record's floor covers the gap), no change reported by the stream or made
//! through this pgcached lies after `F`, and the catalog digest is the one the result was
//! filled under. When in doubt the result is refused, and the query goes to PostgreSQL.

use pgcached_cache::{FillGuard, LastChange, Stamp, Standing};

use super::journal::Floor;

/// Why a result from the shared tier was not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Something it depends on changed at or after its stamp.
    Changed,
    /// A change made through this pgcached has no known position yet.
    LocalWrite,
    /// Something it depends on changed here while it was being fetched.
    Moved,
    /// The catalog differs from the one it was filled under, or is not known here.
    Catalog,
    /// It was filled before this pgcached's stream started, and the shared record does not
    /// cover the gap.
    BeforeCoverage,
    /// This pgcached's stream is not running.
    StreamDown,
    /// The value held another key (a hash collision or a reused name).
    KeyMismatch,
    /// The value is not an entry this version can read.
    Undecodable,
}

impl Refusal {
    /// Every reason, for the metric's documentation.
    pub const ALL: [Refusal; 8] = [
        Refusal::Changed,
        Refusal::LocalWrite,
        Refusal::Moved,
        Refusal::Catalog,
        Refusal::BeforeCoverage,
        Refusal::StreamDown,
        Refusal::KeyMismatch,
        Refusal::Undecodable,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Changed => "changed",
            Refusal::LocalWrite => "local_write",
            Refusal::Moved => "moved",
            Refusal::Catalog => "catalog",
            Refusal::BeforeCoverage => "before_coverage",
            Refusal::StreamDown => "stream_down",
            Refusal::KeyMismatch => "key_mismatch",
            Refusal::Undecodable => "undecodable",
        }
    }
}

/// What this pgcached knows, as the rule needs it.
pub struct Knowledge {
    /// Where its stream's coverage starts, if a stream runs.
    pub since: Option<u64>,
    /// The catalog digest it last read (0: none).
    pub catalog: u64,
    /// The last change it knows of the read's dependencies.
    pub last_change: LastChange,
    /// The floor of its stream.
    pub floor: Floor,
}

impl Knowledge {
    /// What `guard` (the read's dependencies, recorded at this lookup) and `standing` say.
    pub fn of(guard: &FillGuard, standing: &Standing, floor: Floor) -> Knowledge {
        Knowledge {
            since: standing.since(),
            catalog: standing.catalog(),
            last_change: guard.last_change(),
            floor,
        }
    }
}

/// The verdict on a result stamped `stamp` that reads `tables`.
pub fn judge(stamp: Stamp, tables: &[u32], knowledge: &Knowledge) -> Result<(), Refusal> {
    let since = knowledge.since.ok_or(Refusal::StreamDown)?;
    if stamp.catalog == 0 || stamp.catalog != knowledge.catalog {
        return Err(Refusal::Catalog);
    }
    let last = match knowledge.last_change {
        LastChange::At(position) => position,
        LastChange::Unresolved => return Err(Refusal::LocalWrite),
    };
    // At the stamp counts as after it: the stream may report a commit before the committing
    // backend has made it visible, so a query sent once its end had been reported may not see
    // it. A change through this pgcached is bounded by a position read after its
    // acknowledgement, at or after the stamp of any result that missed it.
    if last >= stamp.position {
        return Err(Refusal::Changed);
    }
    if stamp.position >= since {
        return Ok(());
    }
    // Filled before this stream started: what happened in between is only in the floor.
    let Floor::Loaded(floor) = &knowledge.floor else {
        return Err(Refusal::BeforeCoverage);
    };
    if floor.base > stamp.position || floor.upto < since {
        return Err(Refusal::BeforeCoverage);
    }
    let changed_after = |position: u64| position >= stamp.position;
    if changed_after(floor.database)
        || tables
            .iter()
            .any(|oid| floor.tables.get(oid).copied().is_some_and(changed_after))
    {
        return Err(Refusal::Changed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::super::journal::LoadedFloor;
    use super::*;

    fn stamp(position: u64) -> Stamp {
        Stamp {
            position,
            catalog: 7,
        }
    }

    fn knowing(since: u64, last: LastChange, floor: Floor) -> Knowledge {
        Knowledge {
            since: Some(since),
            catalog: 7,
            last_change: last,
            floor,
        }
    }

    fn floor(base: u64, upto: u64, tables: &[(u32, u64)]) -> Floor {
        Floor::Loaded(Arc::new(LoadedFloor {
            base,
            upto,
            database: 0,
            tables: tables.iter().copied().collect::<HashMap<_, _>>(),
        }))
    }

    #[test]
    fn a_result_is_served_only_while_nothing_it_reads_changed_at_or_after_its_stamp() {
        let k = knowing(100, LastChange::At(150), Floor::Pending);
        assert_eq!(
            judge(stamp(150), &[1], &k),
            Err(Refusal::Changed),
            "a change ending at the stamp may not have been visible to the filling query"
        );
        assert_eq!(judge(stamp(151), &[1], &k), Ok(()));
        assert_eq!(judge(stamp(200), &[1], &k), Ok(()));
        assert_eq!(judge(stamp(149), &[1], &k), Err(Refusal::Changed));
        let local = knowing(100, LastChange::Unresolved, Floor::Pending);
        assert_eq!(judge(stamp(900), &[1], &local), Err(Refusal::LocalWrite));
    }

    #[test]
    fn the_catalog_and_the_stream_must_agree() {
        let mut k = knowing(100, LastChange::At(0), Floor::Pending);
        let other = Stamp {
            position: 500,
            catalog: 8,
        };
        assert_eq!(judge(other, &[], &k), Err(Refusal::Catalog));
        let unknown = Stamp {
            position: 500,
            catalog: 0,
        };
        assert_eq!(judge(unknown, &[], &k), Err(Refusal::Catalog));
        k.since = None;
        assert_eq!(judge(stamp(500), &[], &k), Err(Refusal::StreamDown));
    }

    #[test]
    fn results_from_before_the_stream_need_a_floor_that_covers_the_gap() {
        let none = knowing(100, LastChange::At(0), Floor::Unusable);
        assert_eq!(judge(stamp(50), &[1], &none), Err(Refusal::BeforeCoverage));
        let pending = knowing(100, LastChange::At(0), Floor::Pending);
        assert_eq!(
            judge(stamp(50), &[1], &pending),
            Err(Refusal::BeforeCoverage)
        );
        let covering = knowing(100, LastChange::At(0), floor(40, 120, &[(1, 45), (2, 70)]));
        assert_eq!(judge(stamp(50), &[1], &covering), Ok(()));
        assert_eq!(
            judge(stamp(50), &[1, 2], &covering),
            Err(Refusal::Changed),
            "table 2 changed in the gap"
        );
        assert_eq!(
            judge(stamp(30), &[1], &covering),
            Err(Refusal::BeforeCoverage),
            "the record starts after the stamp"
        );
        let short = knowing(100, LastChange::At(0), floor(40, 90, &[]));
        assert_eq!(
            judge(stamp(50), &[1], &short),
            Err(Refusal::BeforeCoverage),
            "the record stops before the stream starts"
        );
        let mut whole = knowing(100, LastChange::At(0), floor(40, 120, &[]));
        if let Floor::Loaded(f) = &mut whole.floor {
            Arc::make_mut(f).database = 60;
        }
        assert_eq!(judge(stamp(50), &[1], &whole), Err(Refusal::Changed));
    }
}
