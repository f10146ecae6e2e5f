//! Numbered, forward-only migrations embedded from `sql/<backend>/`.
//!
//! Each backend applies the migrations newer than the highest version recorded in its
//! `schema_migrations` table, in one transaction per open, and records each version it applies.

use super::{Result, StoreError};

/// One embedded migration file.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The SQLite migrations, in version order.
pub(crate) const SQLITE: &[Migration] = &[Migration {
    version: 1,
    name: "sqlite/0001_init.sql",
    sql: include_str!("../../sql/sqlite/0001_init.sql"),
}];

/// The PostgreSQL migrations, in version order.
pub(crate) const POSTGRES: &[Migration] = &[Migration {
    version: 1,
    name: "postgres/0001_init.sql",
    sql: include_str!("../../sql/postgres/0001_init.sql"),
}];

/// Creates the bookkeeping table; the same statement works on both backends.
pub(crate) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

/// The migrations to apply on a database whose highest applied version is `current`.
///
/// A database newer than this binary is refused: running old code on it could corrupt data.
pub(crate) fn pending(all: &'static [Migration], current: i64) -> Result<&'static [Migration]> {
    let latest = all.last().map_or(0, |m| m.version);
    if current > latest {
        return Err(StoreError::Migration(format!(
            "database schema version {current} is newer than this binary's {latest}"
        )));
    }
    let applied = all.iter().take_while(|m| m.version <= current).count();
    Ok(&all[applied..])
}

/// A migration failure naming the file.
pub(crate) fn failed(migration: &Migration, err: impl std::fmt::Display) -> StoreError {
    StoreError::Migration(format!("{}: {err}", migration.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_numbered_in_order_and_match_file_names() {
        for all in [SQLITE, POSTGRES] {
            for (i, m) in all.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1);
                assert!(m.name.contains(&format!("{:04}_", m.version)), "{}", m.name);
            }
        }
    }

    #[test]
    fn pending_skips_applied_and_refuses_newer_databases() {
        assert_eq!(pending(SQLITE, 0).unwrap().len(), SQLITE.len());
        assert!(pending(SQLITE, SQLITE.len() as i64).unwrap().is_empty());
        assert!(matches!(pending(SQLITE, 99), Err(StoreError::Migration(_))));
    }
}
