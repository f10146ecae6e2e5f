//! Databases that exist for one test: a temp SQLite file, or a fresh schema in the PostgreSQL
//! test database (`TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
//! PostgreSQL tests fail, never skip, when the server cannot be reached.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use computer_use_server::config::DatabaseUrl;
use computer_use_server::store::{self, Store};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database that exists for one test and is removed when dropped.
pub struct TestDb {
    pub url: DatabaseUrl,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(PathBuf),
    Schema { base_url: String, schema: String },
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(format!("cus-store-{}", uuid::Uuid::new_v4()));
        // A nested path also proves `open` creates missing parent directories.
        let url = DatabaseUrl::Sqlite(dir.join("nested").join("store.db"));
        TestDb {
            url,
            cleanup: Cleanup::Dir(dir),
        }
    }

    pub fn postgres() -> TestDb {
        let (url, schema, base_url) = fresh_pg_schema();
        TestDb {
            url: DatabaseUrl::Postgres(url),
            cleanup: Cleanup::Schema { base_url, schema },
        }
    }

    pub fn open(&self) -> Arc<dyn Store> {
        store::open(&self.url, 8).unwrap_or_else(|err| panic!("open {}: {err}", self.describe()))
    }

    /// The value for `DATABASE_URL`.
    pub fn url_string(&self) -> String {
        match &self.url {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => url.clone(),
        }
    }

    pub fn describe(&self) -> String {
        match &self.url {
            DatabaseUrl::Sqlite(path) => path.display().to_string(),
            DatabaseUrl::Postgres(url) => url.clone(),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Schema { base_url, schema } => {
                if let Ok(mut client) = pg_admin(base_url) {
                    let _ =
                        client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
                }
            }
        }
    }
}

pub fn pg_base_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_string())
}

pub fn pg_admin(url: &str) -> Result<::postgres::Client, ::postgres::Error> {
    let mut config: ::postgres::Config = url.parse()?;
    config.connect_timeout(Duration::from_secs(5));
    config.connect(::postgres::NoTls)
}

/// Creates an empty schema in the test database and returns a URL whose connections use it
/// (`options=-csearch_path%3D<schema>`), the schema name and the base URL. Panics with a clear
/// message when PostgreSQL is not reachable. `PostgresStore::open` works on the
/// returned URL unchanged.
pub fn fresh_pg_schema() -> (String, String, String) {
    let base = pg_base_url();
    let mut admin = pg_admin(&base).unwrap_or_else(|err| {
        panic!(
            "PostgreSQL tests need a server: cannot connect to {base} ({err}). \
             Start PostgreSQL or set TEST_DATABASE_URL."
        )
    });
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap_or_else(|err| panic!("create schema {schema} on {base}: {err}"));
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
    (url, schema, base)
}
