//! How `EXPLAIN CACHE` shows what a read depends on and what a write invalidates:
//! `public.users(id) = 42`, `public.orders: whole table (no equality ...)`, `whole database`.

use crate::classify::{CacheableRead, WriteClass};
use crate::pins::reads::{PinValue, RowPin};
use crate::pins::writes::RowsWritten;
use crate::pins::PinType;

/// The tables a write names, for their names.
pub fn write_tables(write: &WriteClass) -> Vec<u32> {
    match write {
        WriteClass::Database | WriteClass::Judging => Vec::new(),
        WriteClass::Known(effect) => std::iter::once(effect.target.oid)
            .chain(effect.whole.iter().map(|t| t.oid))
            .collect(),
    }
}

fn name(names: &[(u32, String)], oid: u32) -> String {
    names
        .iter()
        .find(|(o, _)| *o == oid)
        .map(|(_, n)| n.clone())
        .unwrap_or_else(|| format!("relation {oid}"))
}

/// What a read depends on, one clause per table.
pub fn of_read(read: &CacheableRead, names: &[(u32, String)]) -> String {
    let mut parts: Vec<String> = read.pins.iter().map(|pin| pinned(pin, names)).collect();
    for (table, reason) in read.whole_reasons.iter() {
        parts.push(format!(
            "{}: whole table ({})",
            name(names, table.oid),
            reason.explain()
        ));
    }
    parts.join("; ")
}

fn pinned(pin: &RowPin, names: &[(u32, String)]) -> String {
    let table = name(names, pin.table.oid);
    let columns: Vec<String> = pin
        .columns
        .iter()
        .map(|column| {
            let values: Vec<String> = column
                .values
                .iter()
                .map(|v| shown(v, column.pin_type))
                .collect();
            if values.len() == 1 {
                values[0].clone()
            } else {
                format!("any of ({})", values.join(", "))
            }
        })
        .collect();
    format!("{table} rows by key ({})", columns.join(", "))
}

fn shown(value: &PinValue, pin_type: PinType) -> String {
    match value {
        PinValue::Parameter(n) => format!("${n}"),
        PinValue::Canonical(bytes) => match pin_type {
            PinType::Uuid => bytes.iter().map(|b| format!("{b:02x}")).collect(),
            _ => format!("{:?}", String::from_utf8_lossy(bytes)),
        },
    }
}

/// What a write invalidates when PostgreSQL acknowledges it.
pub fn of_write(write: &WriteClass, names: &[(u32, String)]) -> String {
    let WriteClass::Known(effect) = write else {
        return "whole database (what the write reaches cannot be bounded: a trigger, a rule, a \
                function outside pg_catalog, a view, or a statement pgcached does not read)"
            .to_owned();
    };
    let target = name(names, effect.target.oid);
    let mut parts = vec![match (&effect.facts, &effect.rows) {
        (None, _) => format!("{target}: whole table (not a plain table)"),
        (Some(_), RowsWritten::Unknown) => {
            format!("{target}: its whole-table reads and every pinned column set")
        }
        (Some(_), _) => format!(
            "{target}: its whole-table reads, and the keys of the changed rows where the \
             statement gives them (else the column set)"
        ),
    }];
    for table in &effect.whole {
        parts.push(format!(
            "{}: whole table (cascade or descendant)",
            name(names, table.oid)
        ));
    }
    parts.join("; ")
}
