//! PostgreSQL store (postgres + r2d2_postgres, jsonb).
//!
//! Each pooled connection keeps its prepared statements, so a call is one round trip
//! (bind + execute). Per-session numbers come from counters on the session row, bumped in the
//! same statement as the insert they number: the row lock serialises concurrent writers.

use std::collections::HashMap;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::{Json, ToSql};
use postgres::{Client, Config, NoTls, Row, Statement};
use r2d2::{ManageConnection, Pool, PooledConnection};
use r2d2_postgres::PostgresConnectionManager;
use serde_json::Value;
use serde_json::value::RawValue;

use super::migrate;
use super::{
    EventRecord, MessageListing, MessagePage, MessageRecord, NewSession, Result, SessionRecord,
    Store, StoreError, Usage,
};
use crate::util::time::now_rfc3339;

/// TCP connect timeout unless the URL sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a caller waits for a pooled connection (and `open` for the first one).
const POOL_TIMEOUT: Duration = Duration::from_secs(5);

macro_rules! session_columns {
    () => {
        "id, title, model, provider, system_prompt_suffix, tool_version, settings, status, \
         input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens, \
         created_at, updated_at"
    };
}
macro_rules! message_columns {
    () => {
        "id, session_id, seq, role, content, created_at"
    };
}

const PING: &str = "SELECT 1";
const CREATE_SESSION: &str = "INSERT INTO sessions (id, title, model, provider, \
     system_prompt_suffix, tool_version, settings, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)";
const GET_SESSION: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions WHERE id = $1"
);
const LIST_SESSIONS: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions ORDER BY created_at DESC, ord DESC LIMIT $1 OFFSET $2"
);
const DELETE_SESSION: &str = "DELETE FROM sessions WHERE id = $1";
const SET_STATUS: &str = "UPDATE sessions SET status = $2, updated_at = $3 WHERE id = $1";
const ADD_USAGE: &str = "UPDATE sessions SET input_tokens = input_tokens + $2, \
     output_tokens = output_tokens + $3, \
     cache_creation_input_tokens = cache_creation_input_tokens + $4, \
     cache_read_input_tokens = cache_read_input_tokens + $5, updated_at = $6 WHERE id = $1";
const SET_TITLE: &str = "UPDATE sessions SET title = $2, updated_at = $3 \
     WHERE id = $1 AND (title IS NULL OR title = '')";
/// `$3` is 0 for a queued message (no `seq`), 1 for a conversation message.
const INSERT_MESSAGE: &str = "WITH bump AS ( \
       UPDATE sessions SET last_message_arrival = last_message_arrival + 1, \
         last_message_seq = last_message_seq + $3, updated_at = $6 \
       WHERE id = $1 RETURNING last_message_arrival, last_message_seq) \
     INSERT INTO messages (id, session_id, seq, arrival, role, content, created_at) \
     SELECT $2, $1, CASE WHEN $3 = 0 THEN NULL ELSE bump.last_message_seq END, \
       bump.last_message_arrival, $4, $5, $6 FROM bump \
     RETURNING seq";
/// Taken first by a claimer so claims, inserts and deletes of a session lock in one order.
const LOCK_SESSION: &str = "SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE";
const CLAIM_MESSAGE: &str = concat!(
    "WITH next AS ( \
       SELECT id FROM messages WHERE session_id = $1 AND seq IS NULL \
       ORDER BY arrival LIMIT 1), \
     bump AS ( \
       UPDATE sessions SET last_message_seq = last_message_seq + 1, status = 'running', \
       updated_at = $2 \
       WHERE id = $1 AND EXISTS (SELECT 1 FROM next) RETURNING last_message_seq) \
     UPDATE messages m SET seq = bump.last_message_seq FROM next, bump WHERE m.id = next.id \
     RETURNING ",
    "m.id, m.session_id, m.seq, m.role, m.content, m.created_at"
);
const CONVERSATION: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE session_id = $1 AND seq IS NOT NULL ORDER BY seq"
);
/// The ORDER BY matches the `messages_listing` index.
const LIST_MESSAGES: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE session_id = $1 \
     ORDER BY (seq IS NULL), (coalesce(seq, arrival)) LIMIT $2 OFFSET $3"
);
/// [`LIST_MESSAGES`] and whether the session exists in one round trip: no row when it does
/// not, one row of NULLs when it does but the page is empty. The content comes as text, to be
/// passed through without parsing.
const LIST_MESSAGES_PAGE: &str = "SELECT m.id, m.session_id, m.seq, m.role, m.content::text, \
       m.created_at \
     FROM sessions s LEFT JOIN LATERAL ( \
       SELECT id, session_id, seq, arrival, role, content, created_at FROM messages \
       WHERE session_id = s.id \
       ORDER BY (seq IS NULL), (coalesce(seq, arrival)) LIMIT $2 OFFSET $3) m ON true \
     WHERE s.id = $1 \
     ORDER BY (m.seq IS NULL), (coalesce(m.seq, m.arrival))";
const QUEUED_COUNT: &str = "SELECT count(*) FROM messages WHERE session_id = $1 AND seq IS NULL";
const APPEND_EVENT: &str = "WITH bump AS ( \
       UPDATE sessions SET last_event_seq = last_event_seq + 1, updated_at = $4 \
       WHERE id = $1 RETURNING last_event_seq) \
     INSERT INTO events (session_id, seq, type, payload, created_at) \
     SELECT $1, bump.last_event_seq, $2, $3, $4 FROM bump RETURNING seq";
const LIST_EVENTS: &str = "SELECT session_id, seq, type, payload, created_at FROM events \
     WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
const SESSIONS_TO_RESUME: &str = "SELECT id FROM sessions WHERE status = 'running' \
     OR id IN (SELECT session_id FROM messages WHERE seq IS NULL) ORDER BY created_at, ord";

/// The server backend.
pub struct PostgresStore {
    pool: Pool<Manager>,
    /// The URL's password, scrubbed from every error message.
    password: Option<String>,
}

/// A pooled connection with its prepared statements.
struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

/// r2d2_postgres's manager, plus a statement cache per connection.
struct Manager(PostgresConnectionManager<NoTls>);

impl ManageConnection for Manager {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> std::result::Result<Conn, postgres::Error> {
        let client = self.0.connect()?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> std::result::Result<(), postgres::Error> {
        self.0.is_valid(&mut conn.client)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        self.0.has_broken(&mut conn.client)
    }
}

impl Conn {
    fn statement(&mut self, sql: &'static str) -> Result<Statement> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(sql)?;
        self.statements.insert(sql, stmt.clone());
        Ok(stmt)
    }

    fn query(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let stmt = self.statement(sql)?;
        Ok(self.client.query(&stmt, params)?)
    }

    fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        let stmt = self.statement(sql)?;
        Ok(self.client.query_opt(&stmt, params)?)
    }

    fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let stmt = self.statement(sql)?;
        Ok(self.client.execute(&stmt, params)?)
    }
}

impl PostgresStore {
    /// Connects (failing with `Unavailable` within a few seconds if the server cannot be
    /// reached) and applies pending migrations.
    pub fn open(url: &str, pool_size: u32) -> Result<PostgresStore> {
        let mut config: Config = url
            .parse()
            .map_err(|err| StoreError::Unavailable(format!("invalid PostgreSQL URL: {err}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let password = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .filter(|p| !p.is_empty());
        let manager = Manager(PostgresConnectionManager::new(config, NoTls));
        let built = Pool::builder()
            .max_size(pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(POOL_TIMEOUT)
            // A broken connection is detected on return (`has_broken`); checking on every
            // checkout would cost a round trip per call.
            .test_on_check_out(false)
            .build(manager);
        let store = PostgresStore {
            pool: built
                .map_err(|err| unavailable(&password, "cannot connect to PostgreSQL", err))?,
            password,
        };
        store.migrate()?;
        Ok(store)
    }

    fn conn(&self) -> Result<PooledConnection<Manager>> {
        self.pool
            .get()
            .map_err(|err| unavailable(&self.password, "no PostgreSQL connection", err))
    }

    /// Runs `f` with a pooled connection, scrubbing the password from any error.
    ///
    /// After a server restart every idle pooled connection is dead, and the pool only learns
    /// it by using one. When `f` fails because its connection turned out closed, it is run once
    /// more on a fresh connection, so a restart costs no failed request once the server is back.
    fn with<T>(&self, f: impl Fn(&mut Conn) -> Result<T>) -> Result<T> {
        let mut conn = self.conn()?;
        let result = match f(&mut conn) {
            Err(StoreError::Unavailable(_)) if conn.client.is_closed() => {
                drop(conn);
                let mut fresh = self.conn()?;
                f(&mut fresh)
            }
            other => other,
        };
        result.map_err(|err| match err {
            StoreError::Unavailable(why) => StoreError::Unavailable(redact(&self.password, why)),
            other => other,
        })
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.conn()?;
        let mut tx = conn.client.transaction()?;
        // Concurrent openers of one schema wait here instead of racing the DDL.
        tx.batch_execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(\
             'computer-use-server migrations ' || coalesce(current_schema(), ''), 0))",
        )?;
        tx.batch_execute(migrate::CREATE_TABLE)
            .map_err(|err| StoreError::Migration(format!("schema_migrations: {err}")))?;
        let current: i64 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )?
            .try_get(0)?;
        for migration in migrate::pending(migrate::POSTGRES, current)? {
            tx.batch_execute(migration.sql)
                .and_then(|()| {
                    tx.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at) \
                         VALUES ($1, $2, $3)",
                        &[&migration.version, &migration.name, &now_rfc3339()],
                    )
                })
                .map_err(|err| migrate::failed(migration, err))?;
            log::info!("applied migration {}", migration.name);
        }
        tx.commit()?;
        Ok(())
    }
}

fn unavailable(password: &Option<String>, what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(redact(password, format!("{what}: {err}")))
}

fn redact(password: &Option<String>, message: String) -> String {
    match password {
        Some(secret) => message.replace(secret.as_str(), "***"),
        None => message,
    }
}

impl From<postgres::Error> for StoreError {
    fn from(err: postgres::Error) -> StoreError {
        // A closed connection, or one that failed in transport (reset, unexpected end, as
        // when the server terminates its backends), is an unavailable database, not a bug.
        let transport = std::error::Error::source(&err).is_some_and(|s| s.is::<std::io::Error>());
        if err.is_closed() || transport {
            return StoreError::Unavailable(format!("PostgreSQL connection lost: {err}"));
        }
        let Some(db) = err.as_db_error() else {
            return StoreError::Database(Box::new(err));
        };
        let code = db.code();
        if *code == SqlState::UNIQUE_VIOLATION {
            let detail = db.detail().unwrap_or_default();
            StoreError::Conflict(format!("{} {detail}", db.message()).trim_end().to_string())
        } else if code.code().starts_with("08")
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::TOO_MANY_CONNECTIONS
        {
            StoreError::Unavailable(db.message().to_string())
        } else {
            StoreError::Database(Box::new(err))
        }
    }
}

/// A saturating conversion for LIMIT/OFFSET.
fn sql_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn json(row: &Row, idx: usize) -> Result<Value> {
    Ok(row.try_get::<_, Json<Value>>(idx)?.0)
}

fn session_from_row(row: &Row) -> Result<SessionRecord> {
    Ok(SessionRecord {
        id: row.try_get(0)?,
        title: row.try_get(1)?,
        model: row.try_get(2)?,
        provider: row.try_get(3)?,
        system_prompt_suffix: row.try_get(4)?,
        tool_version: row.try_get(5)?,
        settings: json(row, 6)?,
        status: row.try_get(7)?,
        usage: Usage {
            input_tokens: row.try_get(8)?,
            output_tokens: row.try_get(9)?,
            cache_creation_input_tokens: row.try_get(10)?,
            cache_read_input_tokens: row.try_get(11)?,
        },
        created_at: row.try_get(12)?,
        updated_at: row.try_get(13)?,
    })
}

fn message_from_row(row: &Row) -> Result<MessageRecord> {
    Ok(MessageRecord {
        id: row.try_get(0)?,
        session_id: row.try_get(1)?,
        seq: row.try_get(2)?,
        role: row.try_get(3)?,
        content: json(row, 4)?,
        created_at: row.try_get(5)?,
    })
}

/// A row of [`LIST_MESSAGES_PAGE`]: `None` for the row of NULLs of an empty page.
fn listing_from_row(row: &Row) -> Result<Option<MessageListing>> {
    let Some(id) = row.try_get::<_, Option<String>>(0)? else {
        return Ok(None);
    };
    let text: String = row.try_get(4)?;
    let content = RawValue::from_string(compact_json(&text))
        .map_err(|err| StoreError::Database(Box::new(err)))?;
    Ok(Some(MessageListing {
        id,
        session_id: row.try_get(1)?,
        seq: row.try_get(2)?,
        role: row.try_get(3)?,
        content,
        created_at: row.try_get(5)?,
    }))
}

/// jsonb's text form (`{"a": 1, "b": [2, 3]}`) without the whitespace between tokens, as
/// serde_json writes it: a byte scan that leaves strings untouched.
fn compact_json(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for &byte in text.as_bytes() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if matches!(byte, b' ' | b'\n' | b'\r' | b'\t') {
            continue;
        } else if byte == b'"' {
            in_string = true;
        }
        out.push(byte);
    }
    // Only ASCII whitespace outside strings was removed: still UTF-8.
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

fn event_from_row(row: &Row) -> Result<EventRecord> {
    Ok(EventRecord {
        session_id: row.try_get(0)?,
        seq: row.try_get(1)?,
        kind: row.try_get(2)?,
        payload: json(row, 3)?,
        created_at: row.try_get(4)?,
    })
}

fn map_rows<T>(rows: Vec<Row>, map: fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(map).collect()
}

fn expect_updated(updated: u64, id: &str) -> Result<()> {
    match updated {
        0 => Err(StoreError::NotFound(id.to_string())),
        _ => Ok(()),
    }
}

impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn ping(&self) -> Result<()> {
        self.with(|conn| conn.query(PING, &[]).map(drop))
    }

    fn create_session(&self, new: &NewSession) -> Result<SessionRecord> {
        let now = now_rfc3339();
        self.with(|conn| {
            let params: [&(dyn ToSql + Sync); 8] = [
                &new.id,
                &new.title,
                &new.model,
                &new.provider,
                &new.system_prompt_suffix,
                &new.tool_version,
                &Json(&new.settings),
                &now,
            ];
            conn.execute(CREATE_SESSION, &params)
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
        self.with(|conn| {
            conn.query_opt(GET_SESSION, &[&id])?
                .map(|row| session_from_row(&row))
                .transpose()
        })
    }

    fn list_sessions(&self, skip: u64, limit: u64) -> Result<Vec<SessionRecord>> {
        self.with(|conn| {
            let rows = conn.query(LIST_SESSIONS, &[&sql_int(limit), &sql_int(skip)])?;
            map_rows(rows, session_from_row)
        })
    }

    fn delete_session(&self, id: &str) -> Result<bool> {
        self.with(|conn| Ok(conn.execute(DELETE_SESSION, &[&id])? > 0))
    }

    fn set_session_status(&self, id: &str, status: &str) -> Result<()> {
        let now = now_rfc3339();
        self.with(|conn| expect_updated(conn.execute(SET_STATUS, &[&id, &status, &now])?, id))
    }

    fn add_usage(&self, id: &str, usage: &Usage) -> Result<()> {
        let now = now_rfc3339();
        self.with(|conn| {
            let params: [&(dyn ToSql + Sync); 6] = [
                &id,
                &usage.input_tokens,
                &usage.output_tokens,
                &usage.cache_creation_input_tokens,
                &usage.cache_read_input_tokens,
                &now,
            ];
            expect_updated(conn.execute(ADD_USAGE, &params)?, id)
        })
    }

    fn set_title_if_empty(&self, id: &str, title: &str) -> Result<()> {
        let now = now_rfc3339();
        self.with(|conn| conn.execute(SET_TITLE, &[&id, &title, &now]).map(drop))
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
        let increment = i64::from(!queued);
        let stored = without_nul(content);
        let row = self.with(|conn| {
            let params: [&(dyn ToSql + Sync); 6] = [
                &session_id,
                &id,
                &increment,
                &role,
                &Json(stored.as_ref()),
                &now,
            ];
            conn.query_opt(INSERT_MESSAGE, &params)
        })?;
        let row = row.ok_or_else(|| StoreError::NotFound(session_id.to_string()))?;
        Ok(MessageRecord {
            id: id.to_string(),
            session_id: session_id.to_string(),
            seq: row.try_get(0)?,
            role: role.to_string(),
            content: content.clone(),
            created_at: now,
        })
    }

    fn claim_queued_message(&self, session_id: &str) -> Result<Option<MessageRecord>> {
        let now = now_rfc3339();
        self.with(|conn| {
            let lock = conn.statement(LOCK_SESSION)?;
            let claim = conn.statement(CLAIM_MESSAGE)?;
            let mut tx = conn.client.transaction()?;
            if tx.query_opt(&lock, &[&session_id])?.is_none() {
                return Ok(None);
            }
            let row = tx.query_opt(&claim, &[&session_id, &now])?;
            tx.commit()?;
            row.map(|row| message_from_row(&row)).transpose()
        })
    }

    fn conversation(&self, session_id: &str) -> Result<Vec<MessageRecord>> {
        self.with(|conn| map_rows(conn.query(CONVERSATION, &[&session_id])?, message_from_row))
    }

    fn list_messages(&self, session_id: &str, skip: u64, limit: u64) -> Result<Vec<MessageRecord>> {
        self.with(|conn| {
            let params: [&(dyn ToSql + Sync); 3] = [&session_id, &sql_int(limit), &sql_int(skip)];
            map_rows(conn.query(LIST_MESSAGES, &params)?, message_from_row)
        })
    }

    fn list_messages_page(&self, session_id: &str, skip: u64, limit: u64) -> Result<MessagePage> {
        self.with(|conn| {
            let params: [&(dyn ToSql + Sync); 3] = [&session_id, &sql_int(limit), &sql_int(skip)];
            let rows = conn.query(LIST_MESSAGES_PAGE, &params)?;
            if rows.is_empty() {
                return Ok(None);
            }
            let mut page = Vec::with_capacity(rows.len());
            for row in &rows {
                page.extend(listing_from_row(row)?);
            }
            Ok(Some(page))
        })
    }

    fn queued_count(&self, session_id: &str) -> Result<u64> {
        self.with(|conn| {
            let rows = conn.query(QUEUED_COUNT, &[&session_id])?;
            let n: i64 = match rows.first() {
                Some(row) => row.try_get(0)?,
                None => 0,
            };
            Ok(n.max(0) as u64)
        })
    }

    fn append_event(&self, session_id: &str, kind: &str, payload: &Value) -> Result<i64> {
        let now = now_rfc3339();
        let row = self.with(|conn| {
            conn.query_opt(
                APPEND_EVENT,
                &[
                    &session_id,
                    &kind,
                    &Json(without_nul(payload).as_ref()),
                    &now,
                ],
            )
        })?;
        let row = row.ok_or_else(|| StoreError::NotFound(session_id.to_string()))?;
        Ok(row.try_get(0)?)
    }

    fn list_events(&self, session_id: &str, after: i64, limit: u64) -> Result<Vec<EventRecord>> {
        self.with(|conn| {
            let params: [&(dyn ToSql + Sync); 3] = [&session_id, &after, &sql_int(limit)];
            map_rows(conn.query(LIST_EVENTS, &params)?, event_from_row)
        })
    }

    fn sessions_to_resume(&self) -> Result<Vec<String>> {
        self.with(|conn| {
            let rows = conn.query(SESSIONS_TO_RESUME, &[])?;
            rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
        })
    }
}

/// jsonb cannot hold U+0000 (it rejects the `\u0000` escape), yet tool output can contain it
/// (`cat` of a binary file). Such characters become U+FFFD; everything else is kept as is.
fn without_nul(value: &Value) -> std::borrow::Cow<'_, Value> {
    fn has_nul(value: &Value) -> bool {
        match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(has_nul),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    fn replace(value: &mut Value) {
        match value {
            Value::String(s) => *s = s.replace('\0', "\u{fffd}"),
            Value::Array(items) => items.iter_mut().for_each(replace),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut item) in entries {
                    replace(&mut item);
                    map.insert(key.replace('\0', "\u{fffd}"), item);
                }
            }
            _ => {}
        }
    }
    if !has_nul(value) {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut owned = value.clone();
    replace(&mut owned);
    std::borrow::Cow::Owned(owned)
}

#[cfg(test)]
mod tests {
    use super::compact_json;

    #[test]
    fn compact_json_drops_whitespace_between_tokens_only() {
        let text = r#"[{"text": "a, b: \"c\" \\", "type": "text"}, {"n": [1, 2.5, null]}]"#;
        let compact = compact_json(text);
        assert_eq!(
            compact,
            r#"[{"text":"a, b: \"c\" \\","type":"text"},{"n":[1,2.5,null]}]"#
        );
        let parsed: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(compact, parsed.to_string());
    }
}
