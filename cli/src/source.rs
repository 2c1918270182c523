//! Where `tail` and `demo` get their records: one member of a consumer group
//! (`pg_changestream::consumer`), in manual commit mode so that the tool commits only what
//! it has written and flushed.

use std::time::Duration;

use pg_changestream::consumer::{
    CommitMode, Consumer, ConsumerBuilder, Op, Record, StartLocation, TableSpec,
};
use pg_changestream::ConnectConfig;
use pg_changestream::TableName;

use crate::failure::Failure;

/// Splits `TABLE[@LOCATION]` at the last `@` outside double quotes, so a quoted table
/// name may itself contain `@`.
///
/// # Errors
/// Exit status 2 for a bad table name or location.
pub fn parse_table_arg(arg: &str) -> Result<(TableName, StartLocation), Failure> {
    let mut quoted = false;
    let mut last_at = None;
    for (i, c) in arg.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '@' if !quoted => last_at = Some(i),
            _ => {}
        }
    }
    let split = last_at.map(|at| {
        (
            arg.get(..at).unwrap_or_default(),
            arg.get(at + 1..).unwrap_or_default(),
        )
    });
    let (table, location) = match split {
        Some((table, location)) => (
            table,
            location.parse().map_err(|e: pg_changestream::Error| {
                Failure::from(e).context(format!("--table {arg:?}"))
            })?,
        ),
        None => (arg, StartLocation::FirstUncommitted),
    };
    let table = table.parse().map_err(|e: pg_changestream::Error| {
        Failure::from(e).context(format!("--table {arg:?}"))
    })?;
    Ok((table, location))
}

/// Splits `TABLE=VALUE` (`--where`, `--columns`, `--exclude-columns`) at the first `=`
/// outside double quotes, so a quoted table name may itself contain `=`.
///
/// # Errors
/// Exit status 2 for a missing `=` or a bad table name.
pub fn parse_table_value(flag: &str, arg: &str) -> Result<(TableName, String), Failure> {
    let mut quoted = false;
    let split = arg.char_indices().find_map(|(i, c)| match c {
        '"' => {
            quoted = !quoted;
            None
        }
        '=' if !quoted => Some(i),
        _ => None,
    });
    let Some(at) = split else {
        return Err(Failure::usage(format!(
            "{flag} {arg:?}: expected TABLE=VALUE, e.g. {flag} shop.orders=..."
        )));
    };
    let table = arg.get(..at).unwrap_or_default();
    let value = arg.get(at + 1..).unwrap_or_default();
    let table = table
        .trim()
        .parse()
        .map_err(|e: pg_changestream::Error| Failure::from(e).context(format!("{flag} {arg:?}")))?;
    Ok((table, value.to_owned()))
}

/// A table's row filter and columns from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableChoice {
    /// `--where`: the condition (empty clears).
    pub filter: Option<String>,
    /// `--columns`: only these (and the key).
    pub columns: Option<Vec<String>>,
    /// `--exclude-columns`: all but these.
    pub exclude_columns: Option<Vec<String>>,
}

/// Joins `--where`, `--columns` and `--exclude-columns` to the tables of `--table`.
///
/// # Errors
/// Exit status 2 for a flag naming a table no `--table` reads, a table named twice in one
/// flag, or in both `--columns` and `--exclude-columns`.
pub fn table_choices(
    tables: &[(TableName, StartLocation)],
    filters: &[String],
    columns: &[String],
    exclude_columns: &[String],
) -> Result<Vec<Option<TableChoice>>, Failure> {
    let mut choices: Vec<Option<TableChoice>> = vec![None; tables.len()];
    let list = |value: &str| -> Vec<String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let flags: [(&str, &[String]); 3] = [
        ("--where", filters),
        ("--columns", columns),
        ("--exclude-columns", exclude_columns),
    ];
    for (flag, args) in flags {
        for arg in args {
            let (table, value) = parse_table_value(flag, arg)?;
            let index = tables.iter().position(|(t, _)| *t == table).ok_or_else(|| {
                Failure::usage(format!(
                    "{flag} {arg:?} names table {table}, which no --table reads; add                      --table {table}"
                ))
            })?;
            let choice = choices
                .get_mut(index)
                .ok_or_else(|| Failure::usage("bad table index"))?
                .get_or_insert_with(TableChoice::default);
            let slot_taken = match flag {
                "--where" => choice.filter.replace(value).is_some(),
                "--columns" => {
                    let names = list(&value);
                    if names.is_empty() {
                        return Err(Failure::usage(format!(
                            "{flag} {arg:?} lists no column; name at least one, or leave the                              flag out for every column"
                        )));
                    }
                    choice.columns.replace(names).is_some()
                }
                _ => choice.exclude_columns.replace(list(&value)).is_some(),
            };
            if slot_taken {
                return Err(Failure::usage(format!(
                    "{flag} names table {table} twice; give it once"
                )));
            }
            if choice.columns.is_some() && choice.exclude_columns.is_some() {
                return Err(Failure::usage(format!(
                    "table {table} is given both --columns and --exclude-columns; use one"
                )));
            }
        }
    }
    Ok(choices)
}

/// What to read.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The consumer group.
    pub group: String,
    /// Tables with their start locations and, when given, row filter and columns.
    pub tables: Vec<(TableName, StartLocation, Option<TableChoice>)>,
    /// Operations to deliver; all when empty.
    pub ops: Vec<Op>,
    /// Logical-message prefixes to deliver.
    pub message_prefixes: Vec<String>,
    /// Partitions of a new group; `None` takes an existing group as it is (1 for a new one).
    pub partitions: Option<u32>,
}

/// A reader of one consumer group.
pub struct Source {
    consumer: Consumer,
}

/// Joins `spec.group` (creating it and adding the tables as needed).
///
/// # Errors
/// Exit status 2 for a table that does not exist or is not enabled, a bad location or
/// partition count, or a server without `wal_level=logical`; 1 otherwise.
pub async fn open(config: &ConnectConfig, spec: Spec) -> Result<Source, Failure> {
    let mut builder =
        ConsumerBuilder::new(config.clone(), &spec.group).commit_mode(CommitMode::Manual);
    if let Some(asked) = spec.partitions {
        // The group's catalog allows 1 to 64 partitions; say so before touching the server.
        let partitions = u16::try_from(asked)
            .ok()
            .filter(|p| (1..=64).contains(p))
            .ok_or_else(|| {
                Failure::usage(format!(
                    "--partitions {asked}: a group has 1 to 64 partitions"
                ))
            })?;
        builder = builder.partitions(partitions);
    }
    for (table, location, choice) in &spec.tables {
        builder = match choice {
            None => builder.add_table(table.to_string(), *location),
            Some(choice) => {
                let mut table_spec = TableSpec::new(table.to_string(), *location);
                if let Some(filter) = &choice.filter {
                    table_spec = table_spec.filter(filter);
                }
                if let Some(columns) = &choice.columns {
                    table_spec = table_spec.columns(columns);
                }
                if let Some(columns) = &choice.exclude_columns {
                    table_spec = table_spec.exclude_columns(columns);
                }
                builder.add_table_with(table_spec)
            }
        };
    }
    if !spec.ops.is_empty() {
        builder = builder.operations(&spec.ops);
    }
    for prefix in &spec.message_prefixes {
        builder = builder.message_prefix(prefix);
    }
    let consumer = builder.build().await?;
    Ok(Source { consumer })
}

impl Source {
    /// Up to `limit` records, returning as soon as some are there, or none after `wait`.
    ///
    /// # Errors
    /// The consumer failed (slot invalidated, group deleted, server gone for too long).
    pub async fn poll(&mut self, limit: usize, wait: Duration) -> Result<Vec<Record>, Failure> {
        let bundle = self.consumer.poll(limit, wait).await?;
        Ok(bundle.into_records())
    }

    /// Commits everything the last poll returned.
    ///
    /// # Errors
    /// Writing the cursor failed.
    pub async fn commit(&mut self) -> Result<(), Failure> {
        self.consumer.commit().await.map_err(Failure::from)
    }

    /// The consumer itself, for `publish`'s driver loop.
    pub fn consumer_mut(&mut self) -> &mut Consumer {
        &mut self.consumer
    }

    /// The consumer's counters and lag.
    pub fn stats(&self) -> pg_changestream::consumer::Stats {
        self.consumer.stats()
    }

    /// Leaves the group. Nothing is committed here: the tail loop commits after each
    /// flushed write, and what was polled but not written must be delivered again.
    ///
    /// # Errors
    /// Ending replication failed.
    pub async fn close(self) -> Result<(), Failure> {
        self.consumer.close().await.map_err(Failure::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_arguments_split_at_a_location_keyword() {
        let (t, l) = parse_table_arg("orders").unwrap();
        assert_eq!(
            (t.schema(), t.name(), l),
            ("public", "orders", StartLocation::FirstUncommitted)
        );
        let (t, l) = parse_table_arg("shop.orders@latest").unwrap();
        assert_eq!(
            (t.schema(), t.name(), l),
            ("shop", "orders", StartLocation::Latest)
        );
        let (_, l) = parse_table_arg("o@lsn=16/B374D848").unwrap();
        assert_eq!(l, StartLocation::AtLsn("16/B374D848".parse().unwrap()));
        let (t, l) = parse_table_arg("\"a@b\"@earliest").unwrap();
        assert_eq!((t.name(), l), ("a@b", StartLocation::Earliest));
        let (t, _) = parse_table_arg("\"mail@host\"").unwrap();
        assert_eq!(t.name(), "mail@host");
        assert_eq!(parse_table_arg("o@lsn=zz").unwrap_err().code(), 2);
        assert_eq!(parse_table_arg("a.b.c.d").unwrap_err().code(), 2);
        assert_eq!(parse_table_arg("t@soon").unwrap_err().code(), 2);
    }

    #[test]
    fn filters_and_columns_join_their_tables() {
        let tables = [
            parse_table_arg("shop.orders@latest").unwrap(),
            parse_table_arg("\"a=b\"").unwrap(),
        ];
        let choices = table_choices(
            &tables,
            &["shop.orders=status <> 'draft' and n = 1".into()],
            &["\"a=b\"=x, y".into()],
            &["shop.orders=email".into()],
        )
        .unwrap();
        assert_eq!(
            choices,
            [
                Some(TableChoice {
                    filter: Some("status <> 'draft' and n = 1".into()),
                    columns: None,
                    exclude_columns: Some(vec!["email".into()]),
                }),
                Some(TableChoice {
                    filter: None,
                    columns: Some(vec!["x".into(), "y".into()]),
                    exclude_columns: None,
                }),
            ]
        );
        assert_eq!(table_choices(&tables, &[], &[], &[]).unwrap(), [None, None]);
        for (filters, columns, excluded) in [
            (&["other=true"][..], &[][..], &[][..]),
            (&["shop.orders"][..], &[][..], &[][..]),
            (&[][..], &["shop.orders=a"][..], &["shop.orders=b"][..]),
            (&[][..], &["shop.orders="][..], &[][..]),
            (&["shop.orders=a", "shop.orders=b"][..], &[][..], &[][..]),
        ] {
            let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            let e = table_choices(
                &tables,
                &strings(filters),
                &strings(columns),
                &strings(excluded),
            )
            .unwrap_err();
            assert_eq!(e.code(), 2, "{filters:?} {columns:?} {excluded:?}");
        }
    }
}
