-- Sessions, the conversation plus its queue, and the event log.
-- Timestamps are RFC 3339 UTC text (`2025-06-04T09:05:01.123Z`), so text order is time order.

CREATE TABLE sessions (
    id                          TEXT    PRIMARY KEY NOT NULL,
    -- Creation order: breaks ties between sessions created in the same millisecond.
    ord                         INTEGER NOT NULL UNIQUE,
    title                       TEXT,
    model                       TEXT    NOT NULL,
    provider                    TEXT    NOT NULL,
    system_prompt_suffix        TEXT    NOT NULL DEFAULT '',
    tool_version                TEXT    NOT NULL,
    settings                    TEXT    NOT NULL DEFAULT '{}',
    status                      TEXT    NOT NULL DEFAULT 'idle',
    input_tokens                INTEGER NOT NULL DEFAULT 0,
    output_tokens               INTEGER NOT NULL DEFAULT 0,
    cache_creation_input_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_input_tokens     INTEGER NOT NULL DEFAULT 0,
    -- Counters bumped in the same transaction as the insert they number.
    last_message_seq            INTEGER NOT NULL DEFAULT 0,
    last_message_arrival        INTEGER NOT NULL DEFAULT 0,
    last_event_seq              INTEGER NOT NULL DEFAULT 0,
    created_at                  TEXT    NOT NULL,
    updated_at                  TEXT    NOT NULL
);

CREATE INDEX sessions_newest ON sessions (created_at, ord);
CREATE INDEX sessions_running ON sessions (id) WHERE status = 'running';

CREATE TABLE messages (
    id         TEXT    PRIMARY KEY NOT NULL,
    session_id TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    -- NULL while queued; set when the worker claims the message.
    seq        INTEGER,
    -- Per-session arrival order, the queue's FIFO order.
    arrival    INTEGER NOT NULL,
    role       TEXT    NOT NULL,
    content    TEXT    NOT NULL,
    created_at TEXT    NOT NULL
);

CREATE UNIQUE INDEX messages_conversation ON messages (session_id, seq) WHERE seq IS NOT NULL;
-- list_messages order: conversation by seq, then queued by arrival.
CREATE INDEX messages_listing ON messages (session_id, seq IS NULL, coalesce(seq, arrival));
CREATE INDEX messages_queued ON messages (session_id, arrival) WHERE seq IS NULL;

CREATE TABLE events (
    session_id TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    type       TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    PRIMARY KEY (session_id, seq)
);
