//! SQLite store (r2d2_sqlite): WAL, synchronous=NORMAL, foreign keys, IMMEDIATE writes.
//!
//! Per-session numbers (`seq` of messages and events, queue arrival order) come from counters
//! on the session row, bumped in the same IMMEDIATE transaction as the insert they number, so
//! they are unique and gap-free however many threads write.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::config::DbConfig;
use rusqlite::types::Type;
use rusqlite::{
    Connection, ErrorCode, OptionalExtension, Row, Transaction, TransactionBehavior, ffi, params,
};
use serde_json::Value;
use serde_json::value::RawValue;

use super::migrate::{self, Migration};
use super::{
    EventRecord, MessageListing, MessagePage, MessageRecord, NewSession, Result, SessionRecord,
    Store, StoreError, Usage,
};
use crate::util::time::now_rfc3339;

/// How long a writer waits for the database lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller waits for a pooled connection.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// Enough for every distinct statement of this file.
const STATEMENT_CACHE: usize = 32;

const SESSION_COLUMNS: &str = "id, title, model, provider, system_prompt_suffix, tool_version, \
     settings, status, input_tokens, output_tokens, cache_creation_input_tokens, \
     cache_read_input_tokens, created_at, updated_at";
const MESSAGE_COLUMNS: &str = "id, session_id, seq, role, content, created_at";

/// The embedded default backend.
pub struct SqliteStore {
    pool: Pool<SqliteConnectionManager>,
    /// Held for the whole of a write transaction. SQLite admits one writer at a time; a
    /// writer that finds the lock taken sleeps in its busy handler (1, 2, 5… up to 100 ms at
    /// a time) and is not woken when the lock frees, so contending writers of this process
    /// queue here instead and each starts the moment the previous one commits.
    writer: Mutex<()>,
}

impl SqliteStore {
    /// Opens (creating it and its directory if missing) the database file and migrates it.
    ///
    /// The path `:memory:` gives a private in-memory database (for tests), served by a single
    /// connection.
    pub fn open(path: &Path, pool_size: u32) -> Result<SqliteStore> {
        if path == Path::new(":memory:") {
            return SqliteStore::open_in_memory();
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|err| {
                StoreError::Unavailable(format!("cannot create directory {}: {err}", dir.display()))
            })?;
        }
        let opening = |err: StoreError| match err {
            StoreError::Unavailable(why) => {
                StoreError::Unavailable(format!("{}: {why}", path.display()))
            }
            other => other,
        };
        // One connection first: switching to WAL and migrating must not race the pool's
        // connections, which then only see a database already in WAL mode.
        let mut first = Connection::open(path).map_err(|err| opening(err.into()))?;
        configure(&mut first).map_err(|err| opening(err.into()))?;
        enable_wal(&first).map_err(|err| opening(err.into()))?;
        apply_migrations(&mut first)?;
        drop(first);
        let manager = SqliteConnectionManager::file(path).with_init(configure);
        let pool = pool_builder(pool_size)
            .build(manager)
            .map_err(|err| StoreError::Unavailable(format!("{}: {err}", path.display())))?;
        Ok(SqliteStore {
            pool,
            writer: Mutex::new(()),
        })
    }

    fn open_in_memory() -> Result<SqliteStore> {
        let manager = SqliteConnectionManager::memory().with_init(configure);
        let pool = pool_builder(1)
            .build(manager)
            .map_err(|err| StoreError::Unavailable(format!(":memory:: {err}")))?;
        let store = SqliteStore {
            pool,
            writer: Mutex::new(()),
        };
        apply_migrations(&mut *store.conn()?)?;
        Ok(store)
    }

    fn conn(&self) -> Result<PooledConnection<SqliteConnectionManager>> {
        self.pool
            .get()
            .map_err(|err| StoreError::Unavailable(format!("no SQLite connection: {err}")))
    }

    /// Runs `f` in one IMMEDIATE transaction: the write lock is taken up front, so a writer
    /// waits (busy timeout) instead of failing on a stale snapshot.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn()?;
        f(&conn)
    }
}

fn pool_builder(size: u32) -> r2d2::Builder<SqliteConnectionManager> {
    // SQLite connections do not break, so no validity query on every checkout.
    Pool::builder()
        .max_size(size.max(1))
        .connection_timeout(POOL_TIMEOUT)
        .test_on_check_out(false)
}

/// Per-connection settings.
/// Per-connection settings. WAL mode is not among them: it is a property of the database
/// file, set once by [`enable_wal`] when the store opens.
fn configure(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Plans must not depend on bound values: otherwise SQLite (built with STAT4) marks a
    // statement whose plan looked at a parameter (`LIMIT ?`, …) expired whenever that
    // parameter is bound again, and every cached paging query is compiled anew on each call.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
}

/// Switches the database file to WAL. SQLite answers "database is locked" at once, without
/// its busy handler, when another opener holds a lock during the switch (several processes
/// or stores opening a fresh file together), so a busy switch is retried within the busy
/// timeout.
fn enable_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.execute_batch("PRAGMA journal_mode = WAL;") {
            Err(rusqlite::Error::SqliteFailure(err, _))
                if err.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn apply_migrations(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(migrate::CREATE_TABLE)
        .map_err(|err| StoreError::Migration(format!("schema_migrations: {err}")))?;
    let current: i64 = tx.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    for migration in migrate::pending(migrate::SQLITE, current)? {
        apply_one(&tx, migration).map_err(|err| migrate::failed(migration, err))?;
        log::info!("applied migration {}", migration.name);
    }
    tx.commit()?;
    Ok(())
}

fn apply_one(tx: &Transaction<'_>, migration: &Migration) -> rusqlite::Result<()> {
    tx.execute_batch(migration.sql)?;
    tx.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
        params![migration.version, migration.name, now_rfc3339()],
    )?;
    Ok(())
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> StoreError {
        let rusqlite::Error::SqliteFailure(code, _) = &err else {
            return StoreError::Database(Box::new(err));
        };
        match code.code {
            ErrorCode::ConstraintViolation
                if matches!(
                    code.extended_code,
                    ffi::SQLITE_CONSTRAINT_PRIMARYKEY | ffi::SQLITE_CONSTRAINT_UNIQUE
                ) =>
            {
                StoreError::Conflict(err.to_string())
            }
            // Storage trouble the caller cannot fix by changing the request.
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::ReadOnly
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::PermissionDenied => StoreError::Unavailable(err.to_string()),
            _ => StoreError::Database(Box::new(err)),
        }
    }
}

/// A saturating conversion for LIMIT/OFFSET (SQLite integers are signed).
fn sql_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn json_column(row: &Row<'_>, idx: usize) -> rusqlite::Result<Value> {
    let conversion = |err: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, err)
    };
    let text = row
        .get_ref(idx)?
        .as_str()
        .map_err(|e| conversion(Box::new(e)))?;
    serde_json::from_str(text).map_err(|e| conversion(Box::new(e)))
}

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        id: row.get(0)?,
        title: row.get(1)?,
        model: row.get(2)?,
        provider: row.get(3)?,
        system_prompt_suffix: row.get(4)?,
        tool_version: row.get(5)?,
        settings: json_column(row, 6)?,
        status: row.get(7)?,
        usage: Usage {
            input_tokens: row.get(8)?,
            output_tokens: row.get(9)?,
            cache_creation_input_tokens: row.get(10)?,
            cache_read_input_tokens: row.get(11)?,
        },
        created_at: row.get(12)?,
        updated_at: row.get(13)?,
    })
}

fn message_from_row(row: &Row<'_>) -> rusqlite::Result<MessageRecord> {
    Ok(MessageRecord {
        id: row.get(0)?,
        session_id: row.get(1)?,
        seq: row.get(2)?,
        role: row.get(3)?,
        content: json_column(row, 4)?,
        created_at: row.get(5)?,
    })
}

/// A message row with its content passed through as the stored JSON text.
fn listing_from_row(row: &Row<'_>) -> rusqlite::Result<MessageListing> {
    let text: String = row.get(4)?;
    let content = RawValue::from_string(text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(4, Type::Text, Box::new(e)))?;
    Ok(MessageListing {
        id: row.get(0)?,
        session_id: row.get(1)?,
        seq: row.get(2)?,
        role: row.get(3)?,
        content,
        created_at: row.get(5)?,
    })
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<EventRecord> {
    Ok(EventRecord {
        session_id: row.get(0)?,
        seq: row.get(1)?,
        kind: row.get(2)?,
        payload: json_column(row, 3)?,
        created_at: row.get(4)?,
    })
}

/// Runs a query and collects its rows.
fn collect<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, map)?;
    Ok(rows.collect::<rusqlite::Result<Vec<T>>>()?)
}

/// Bumps a counter of the session row and returns the new values of `returning`;
/// `NotFound` if the session does not exist.
fn bump_session(
    tx: &Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
    session_id: &str,
) -> Result<(i64, i64)> {
    tx.prepare_cached(sql)?
        .query_row(params, |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(session_id.to_string()))
}

/// Updates the session row; `NotFound` if it does not exist.
fn update_session(
    tx: &Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
    id: &str,
) -> Result<()> {
    match tx.prepare_cached(sql)?.execute(params)? {
        0 => Err(StoreError::NotFound(id.to_string())),
        _ => Ok(()),
    }
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn ping(&self) -> Result<()> {
        self.read(|conn| {
            conn.prepare_cached("SELECT 1")?.query_row([], |_| Ok(()))?;
            Ok(())
        })
    }

    fn create_session(&self, new: &NewSession) -> Result<SessionRecord> {
        let now = now_rfc3339();
        let settings = new.settings.to_string();
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO sessions (id, ord, title, model, provider, system_prompt_suffix, \
                 tool_version, settings, created_at, updated_at) \
                 VALUES (?1, (SELECT coalesce(max(ord), 0) + 1 FROM sessions), \
                 ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
            )?
            .execute(params![
                new.id,
                new.title,
                new.model,
                new.provider,
                new.system_prompt_suffix,
                new.tool_version,
                settings,
                now,
            ])?;
            Ok(())
        })?;
        Ok(SessionRecord {
            id: new.id.clone(),
            title: new.title.clone(),
            model: new.model.clone(),
            provider: new.provider.clone(),
            system_prompt_suffix: new.system_prompt_suffix.clone(),
            tool_version: new.tool_version.clone(),
            settings: new.settings.clone(),
            status: "idle".to_string(),
            usage: Usage::default(),
            created_at: now.clone(),
            updated_at: now,
        })
    }

    fn get_session(&self, id: &str) -> Result<Option<SessionRecord>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1");
        self.read(|conn| {
            Ok(conn
                .prepare_cached(&sql)?
                .query_row([id], session_from_row)
                .optional()?)
        })
    }

    fn list_sessions(&self, skip: u64, limit: u64) -> Result<Vec<SessionRecord>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions \
             ORDER BY created_at DESC, ord DESC LIMIT ?1 OFFSET ?2"
        );
        self.read(|conn| {
            collect(
                conn,
                &sql,
                [sql_int(limit), sql_int(skip)],
                session_from_row,
            )
        })
    }

    fn delete_session(&self, id: &str) -> Result<bool> {
        self.write(|tx| {
            Ok(tx
                .prepare_cached("DELETE FROM sessions WHERE id = ?1")?
                .execute([id])?
                > 0)
        })
    }

    fn set_session_status(&self, id: &str, status: &str) -> Result<()> {
        let sql = "UPDATE sessions SET status = ?2, updated_at = ?3 WHERE id = ?1";
        self.write(|tx| update_session(tx, sql, params![id, status, now_rfc3339()], id))
    }

    fn add_usage(&self, id: &str, usage: &Usage) -> Result<()> {
        let sql = "UPDATE sessions SET input_tokens = input_tokens + ?2, \
                   output_tokens = output_tokens + ?3, \
                   cache_creation_input_tokens = cache_creation_input_tokens + ?4, \
                   cache_read_input_tokens = cache_read_input_tokens + ?5, \
                   updated_at = ?6 WHERE id = ?1";
        let params = params![
            id,
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_creation_input_tokens,
            usage.cache_read_input_tokens,
            now_rfc3339(),
        ];
        self.write(|tx| update_session(tx, sql, params, id))
    }

    fn set_title_if_empty(&self, id: &str, title: &str) -> Result<()> {
        self.write(|tx| {
            tx.prepare_cached(
                "UPDATE sessions SET title = ?2, updated_at = ?3 \
                 WHERE id = ?1 AND (title IS NULL OR title = '')",
            )?
            .execute(params![id, title, now_rfc3339()])?;
            Ok(())
        })
    }

    fn insert_message(
        &self,
        session_id: &str,
        id: &str,
        role: &str,
        content: &Value,
        queued: bool,
    ) -> Result<MessageRecord> {
        let now = now_rfc3339();
        let text = content.to_string();
        let seq = self.write(|tx| {
            let (arrival, seq) = bump_session(
                tx,
                "UPDATE sessions SET last_message_arrival = last_message_arrival + 1, \
                 last_message_seq = last_message_seq + ?2, updated_at = ?3 \
                 WHERE id = ?1 RETURNING last_message_arrival, last_message_seq",
                params![session_id, i64::from(!queued), now],
                session_id,
            )?;
            let seq = (!queued).then_some(seq);
            tx.prepare_cached(
                "INSERT INTO messages (id, session_id, seq, arrival, role, content, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![id, session_id, seq, arrival, role, text, now])?;
            Ok(seq)
        })?;
        Ok(MessageRecord {
            id: id.to_string(),
            session_id: session_id.to_string(),
            seq,
            role: role.to_string(),
            content: content.clone(),
            created_at: now,
        })
    }

    fn claim_queued_message(&self, session_id: &str) -> Result<Option<MessageRecord>> {
        let select = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages \
             WHERE session_id = ?1 AND seq IS NULL ORDER BY arrival LIMIT 1"
        );
        self.write(|tx| {
            let Some(mut message) = tx
                .prepare_cached(&select)?
                .query_row([session_id], message_from_row)
                .optional()?
            else {
                return Ok(None);
            };
            let (seq, _) = bump_session(
                tx,
                "UPDATE sessions SET last_message_seq = last_message_seq + 1, \
                 status = 'running', updated_at = ?2 \
                 WHERE id = ?1 RETURNING last_message_seq, 0",
                params![session_id, now_rfc3339()],
                session_id,
            )?;
            tx.prepare_cached("UPDATE messages SET seq = ?2 WHERE id = ?1")?
                .execute(params![message.id, seq])?;
            message.seq = Some(seq);
            Ok(Some(message))
        })
    }

    fn conversation(&self, session_id: &str) -> Result<Vec<MessageRecord>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages \
             WHERE session_id = ?1 AND seq IS NOT NULL ORDER BY seq"
        );
        self.read(|conn| collect(conn, &sql, [session_id], message_from_row))
    }

    fn list_messages(&self, session_id: &str, skip: u64, limit: u64) -> Result<Vec<MessageRecord>> {
        // The ORDER BY matches the `messages_listing` index, so no sort of large rows.
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = ?1 \
             ORDER BY seq IS NULL, coalesce(seq, arrival) LIMIT ?2 OFFSET ?3"
        );
        let params = params![session_id, sql_int(limit), sql_int(skip)];
        self.read(|conn| collect(conn, &sql, params, message_from_row))
    }

    fn list_messages_page(&self, session_id: &str, skip: u64, limit: u64) -> Result<MessagePage> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = ?1 \
             ORDER BY seq IS NULL, coalesce(seq, arrival) LIMIT ?2 OFFSET ?3"
        );
        let params = params![session_id, sql_int(limit), sql_int(skip)];
        self.read(|conn| {
            let exists = conn
                .prepare_cached("SELECT 1 FROM sessions WHERE id = ?1")?
                .exists([session_id])?;
            if !exists {
                return Ok(None);
            }
            collect(conn, &sql, params, listing_from_row).map(Some)
        })
    }

    fn queued_count(&self, session_id: &str) -> Result<u64> {
        self.read(|conn| {
            let n: i64 = conn
                .prepare_cached(
                    "SELECT count(*) FROM messages WHERE session_id = ?1 AND seq IS NULL",
                )?
                .query_row([session_id], |r| r.get(0))?;
            Ok(n.max(0) as u64)
        })
    }

    fn append_event(&self, session_id: &str, kind: &str, payload: &Value) -> Result<i64> {
        let now = now_rfc3339();
        let text = payload.to_string();
        self.write(|tx| {
            let (seq, _) = bump_session(
                tx,
                "UPDATE sessions SET last_event_seq = last_event_seq + 1, updated_at = ?2 \
                 WHERE id = ?1 RETURNING last_event_seq, 0",
                params![session_id, now],
                session_id,
            )?;
            tx.prepare_cached(
                "INSERT INTO events (session_id, seq, type, payload, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![session_id, seq, kind, text, now])?;
            Ok(seq)
        })
    }

    fn list_events(&self, session_id: &str, after: i64, limit: u64) -> Result<Vec<EventRecord>> {
        let sql = "SELECT session_id, seq, type, payload, created_at FROM events \
                   WHERE session_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3";
        let params = params![session_id, after, sql_int(limit)];
        self.read(|conn| collect(conn, sql, params, event_from_row))
    }

    fn sessions_to_resume(&self) -> Result<Vec<String>> {
        let sql = "SELECT id FROM sessions WHERE status = 'running' \
                   OR id IN (SELECT session_id FROM messages WHERE seq IS NULL) \
                   ORDER BY created_at, ord";
        self.read(|conn| collect(conn, sql, [], |r| r.get(0)))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn message_page_passes_the_stored_content_through() {
        let store = SqliteStore::open(Path::new(":memory:"), 1).unwrap();
        let new = NewSession {
            id: "s".into(),
            title: None,
            model: "m".into(),
            provider: "anthropic".into(),
            system_prompt_suffix: String::new(),
            tool_version: "t".into(),
            settings: json!({}),
        };
        store.create_session(&new).unwrap();
        assert_eq!(
            store.list_messages_page("s", 0, 10).unwrap().unwrap().len(),
            0
        );
        assert!(store.list_messages_page("nope", 0, 10).unwrap().is_none());
        let content = json!([{"type": "text", "text": "a \"b\" \u{2603}"}]);
        store
            .insert_message("s", "q", "user", &content, true)
            .unwrap();
        store
            .insert_message("s", "c", "assistant", &content, false)
            .unwrap();
        let records = store.list_messages("s", 0, 10).unwrap();
        let page = store.list_messages_page("s", 0, 10).unwrap().unwrap();
        assert_eq!(page.len(), 2);
        for (record, listing) in records.iter().zip(&page) {
            assert_eq!((&record.id, record.seq), (&listing.id, listing.seq));
            assert_eq!(listing.content.get(), record.content.to_string());
            let parsed: Value = serde_json::from_str(listing.content.get()).unwrap();
            assert_eq!(parsed, record.content);
        }
        let second = store.list_messages_page("s", 1, 1).unwrap().unwrap();
        assert_eq!(second[0].id, "q");
    }
}
