//! A read's row dependencies for one execution.
//!
//! Classification resolves a read's pins once ([`RowPin`]: a table, a registered column set,
//! and per column the canonical values of its constants or the parameters to take them from).
//! Each execution then turns them into keys: parameters are read from the Bind and made
//! canonical for their column's type. A pin that cannot be made exact for this execution (a
//! NULL or unreadable parameter, a parameter declared with another type, text in a session
//! whose client encoding is not UTF-8, too many key combinations) makes its table a dependency
//! as a whole table instead: wider, never narrower.

use pgcached_cache::{ColumnSetId, RowDependency, TableId};

use super::canonical::PinType;
use super::keys::{combinations, key_hash};

/// Most keys one pin expands to; past this its table is a whole-table dependency.
pub const MAX_KEYS_PER_PIN: usize = 64;

/// Where a pinned column's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinValue {
    /// A constant of the statement, in canonical form.
    Canonical(Vec<u8>),
    /// The `n`-th parameter (1-based) of each execution.
    Parameter(u16),
}

/// One pinned column: its type and the values it is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinColumn {
    /// The column's pin type.
    pub pin_type: PinType,
    /// Its values (any of them may match).
    pub values: Vec<PinValue>,
}

/// The rows of one table a read pins: a registered column set and its columns' values, in the
/// set's column order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowPin {
    /// The table.
    pub table: TableId,
    /// The registered column set.
    pub set: ColumnSetId,
    /// The set's columns, in its order.
    pub columns: Vec<PinColumn>,
}

/// Where an execution's parameter values come from.
#[derive(Debug, Clone, Copy)]
pub enum ExecutionValues<'a> {
    /// None (a simple query without literals, or none known).
    Nothing,
    /// An extended-protocol execution: its Bind arguments and its statement's declared types.
    Bind {
        /// The Bind's arguments ([`crate::wire::extended::Bind::arguments`]).
        arguments: &'a [u8],
        /// The Parse's parameter types ([`crate::wire::extended::Parse::param_types`]).
        types: &'a [u8],
    },
    /// A simple query classified by its shape: its literals are its parameters.
    Literals(&'a str),
}

/// An execution's parameter values, by parameter number, with their declared types.
#[derive(Debug, Clone, Default)]
pub struct ReadParameters {
    /// Per parameter (number 1 first): its format (0 text, 1 binary) and value (None: NULL,
    /// or a number with no value in this execution).
    values: Vec<(i16, Option<Vec<u8>>)>,
    /// Declared type per parameter (missing or 0: left to the server).
    declared: Vec<u32>,
}

impl ReadParameters {
    /// Reads them; `None` when they cannot be read (an unreadable Bind, a text the lexer
    /// cannot follow).
    pub fn read(values: ExecutionValues<'_>) -> Option<ReadParameters> {
        match values {
            ExecutionValues::Nothing => None,
            ExecutionValues::Bind { arguments, types } => {
                let bound = crate::wire::extended::bind_parameters(arguments)?;
                Some(ReadParameters {
                    values: bound
                        .values
                        .into_iter()
                        .map(|(format, value)| (format, value.map(<[u8]>::to_vec)))
                        .collect(),
                    declared: crate::wire::extended::parameter_types(types).unwrap_or_default(),
                })
            }
            ExecutionValues::Literals(sql) => {
                let shape = crate::sql::shape::of(sql)?;
                let mut values: Vec<(i16, Option<Vec<u8>>)> =
                    vec![(0, None); usize::from(shape.first_literal - 1)];
                values.extend(
                    shape
                        .literals
                        .iter()
                        .map(|literal| (0, Some(literal.text().to_vec()))),
                );
                Some(ReadParameters {
                    values,
                    declared: Vec::new(),
                })
            }
        }
    }

    /// The parameters as the pins use them.
    pub fn view(&self) -> Parameters<'_> {
        Parameters {
            values: &self.values,
            declared: &self.declared,
        }
    }
}

/// What one execution's parameters are: values by number, and declared types.
#[derive(Debug, Clone, Copy)]
pub struct Parameters<'a> {
    /// Per parameter: format and value.
    pub values: &'a [(i16, Option<Vec<u8>>)],
    /// The declared type of each parameter (missing or 0: left to the server).
    pub declared: &'a [u32],
}

impl Parameters<'_> {
    /// The canonical form of parameter `n` (1-based) for a column of `pin_type`.
    pub fn canonical(&self, n: u16, pin_type: PinType) -> Option<Vec<u8>> {
        let index = usize::from(n).checked_sub(1)?;
        let (format, value) = self.values.get(index)?;
        let declared = self.declared.get(index).copied().unwrap_or(0);
        if !pin_type.accepts_parameter_type(declared) {
            return None;
        }
        let value = value.as_deref()?;
        match format {
            0 => pin_type.canonical_text(value),
            1 => pin_type.canonical_binary(declared, value),
            _ => None,
        }
    }
}

/// The row dependencies of one execution, and the tables whose pins could not be made exact
/// (to depend on as whole tables).
pub fn row_dependencies(
    pins: &[RowPin],
    parameters: Option<Parameters<'_>>,
    utf8_client: bool,
) -> (Vec<RowDependency>, Vec<TableId>) {
    let mut rows = Vec::with_capacity(pins.len());
    let mut whole = Vec::new();
    for pin in pins {
        match keys_of(pin, parameters, utf8_client) {
            Some(keys) => rows.push(RowDependency {
                table: pin.table.clone(),
                columns: pin.set,
                keys,
            }),
            None => whole.push(pin.table.clone()),
        }
    }
    (rows, whole)
}

fn keys_of(
    pin: &RowPin,
    parameters: Option<Parameters<'_>>,
    utf8_client: bool,
) -> Option<Vec<pgcached_cache::KeyHash>> {
    let mut columns: Vec<Vec<Vec<u8>>> = Vec::with_capacity(pin.columns.len());
    for column in &pin.columns {
        if column.pin_type == PinType::Text && !utf8_client {
            return None;
        }
        let mut values = Vec::with_capacity(column.values.len());
        for value in &column.values {
            let canonical = match value {
                PinValue::Canonical(bytes) => bytes.clone(),
                PinValue::Parameter(n) => parameters?.canonical(*n, column.pin_type)?,
            };
            if !values.contains(&canonical) {
                values.push(canonical);
            }
        }
        columns.push(values);
    }
    let combinations = combinations(&columns, MAX_KEYS_PER_PIN)?;
    Some(
        combinations
            .iter()
            .map(|values| key_hash(&pin.table, pin.set, values))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn table() -> TableId {
        TableId {
            database: Arc::from("app"),
            oid: 42,
        }
    }

    fn pin(values: Vec<PinValue>, pin_type: PinType) -> RowPin {
        RowPin {
            table: table(),
            set: ColumnSetId(1),
            columns: vec![PinColumn { pin_type, values }],
        }
    }

    #[test]
    fn constants_and_parameters_give_the_same_key_for_the_same_value() {
        let constant = pin(vec![PinValue::Canonical(b"7".to_vec())], PinType::Integer);
        let (rows, whole) = row_dependencies(&[constant], None, true);
        assert!(whole.is_empty());
        let by_constant = rows[0].keys.clone();

        let parameter = pin(vec![PinValue::Parameter(1)], PinType::Integer);
        let text = [(0, Some(b"007".to_vec()))];
        let (rows, _) = row_dependencies(
            std::slice::from_ref(&parameter),
            Some(Parameters {
                values: &text,
                declared: &[0],
            }),
            true,
        );
        assert_eq!(rows[0].keys, by_constant);
        let binary = [(1, Some(7i64.to_be_bytes().to_vec()))];
        let (rows, _) = row_dependencies(
            std::slice::from_ref(&parameter),
            Some(Parameters {
                values: &binary,
                declared: &[crate::pins::canonical::oid::INT8],
            }),
            true,
        );
        assert_eq!(
            rows[0].keys, by_constant,
            "an int8 parameter for the same row"
        );
        let literals = ReadParameters::read(ExecutionValues::Literals("SELECT 1 WHERE k = 7"))
            .expect("literals");
        let shape_pin = pin(vec![PinValue::Parameter(2)], PinType::Integer);
        let (rows, _) = row_dependencies(&[shape_pin], Some(literals.view()), true);
        assert_eq!(rows[0].keys, by_constant, "a literal of a shape");
    }

    #[test]
    fn what_cannot_be_made_exact_falls_back_to_the_whole_table() {
        let parameter = pin(vec![PinValue::Parameter(1)], PinType::Integer);
        let null = [(0, None)];
        let numeric = [(0, Some(b"7".to_vec()))];
        for (values, declared) in [(&null[..], 0), (&numeric[..], 1700)] {
            let (rows, whole) = row_dependencies(
                std::slice::from_ref(&parameter),
                Some(Parameters {
                    values,
                    declared: &[declared],
                }),
                true,
            );
            assert!(rows.is_empty());
            assert_eq!(whole, vec![table()]);
        }
        let (_, whole) = row_dependencies(&[parameter], None, true);
        assert_eq!(whole, vec![table()], "no parameters at all");
        let text = pin(vec![PinValue::Canonical(b"x".to_vec())], PinType::Text);
        let (_, whole) = row_dependencies(&[text], None, false);
        assert_eq!(whole, vec![table()], "text in a non-UTF-8 session");
        let many: Vec<PinValue> = (0..65)
            .map(|i| PinValue::Canonical(i.to_string().into_bytes()))
            .collect();
        let (_, whole) = row_dependencies(&[pin(many, PinType::Integer)], None, true);
        assert_eq!(whole, vec![table()], "too many keys");
    }
}
