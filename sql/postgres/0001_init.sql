-- Sessions, the conversation plus its queue, and the event log.
-- Timestamps are RFC 3339 UTC text (`2025-06-04T09:05:01.123Z`), as the API returns them and
-- as the SQLite backend stores them; text order is time order.

CREATE TABLE sessions (
    id                          TEXT    PRIMARY KEY,
    -- Creation order: breaks ties between sessions created in the same millisecond.
    ord                         BIGINT  GENERATED ALWAYS AS IDENTITY UNIQUE,
    title                       TEXT,
    model                       TEXT    NOT NULL,
    provider                    TEXT    NOT NULL,
    system_prompt_suffix        TEXT    NOT NULL DEFAULT '',
    tool_version                TEXT    NOT NULL,
    settings                    JSONB   NOT NULL DEFAULT '{}',
    status                      TEXT    NOT NULL DEFAULT 'idle',
    input_tokens                BIGINT  NOT NULL DEFAULT 0,
    output_tokens               BIGINT  NOT NULL DEFAULT 0,
    cache_creation_input_tokens BIGINT  NOT NULL DEFAULT 0,
    cache_read_input_tokens     BIGINT  NOT NULL DEFAULT 0,
    -- Counters bumped in the same statement as the insert they number; the row lock
    -- serialises concurrent writers of one session.
    last_message_seq            BIGINT  NOT NULL DEFAULT 0,
    last_message_arrival        BIGINT  NOT NULL DEFAULT 0,
    last_event_seq              BIGINT  NOT NULL DEFAULT 0,
    created_at                  TEXT    NOT NULL,
    updated_at                  TEXT    NOT NULL
);

CREATE INDEX sessions_newest ON sessions (created_at, ord);
CREATE INDEX sessions_running ON sessions (id) WHERE status = 'running';

CREATE TABLE messages (
    id         TEXT    PRIMARY KEY,
    session_id TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    -- NULL while queued; set when the worker claims the message.
    seq        BIGINT,
    -- Per-session arrival order, the queue's FIFO order.
    arrival    BIGINT  NOT NULL,
    role       TEXT    NOT NULL,
    content    JSONB   NOT NULL,
    created_at TEXT    NOT NULL
);

CREATE UNIQUE INDEX messages_conversation ON messages (session_id, seq) WHERE seq IS NOT NULL;
-- list_messages order: conversation by seq, then queued by arrival.
CREATE INDEX messages_listing ON messages (session_id, (seq IS NULL), (coalesce(seq, arrival)));
CREATE INDEX messages_queued ON messages (session_id, arrival) WHERE seq IS NULL;

CREATE TABLE events (
    session_id TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq        BIGINT  NOT NULL,
    type       TEXT    NOT NULL,
    payload    JSONB   NOT NULL,
    created_at TEXT    NOT NULL,
    PRIMARY KEY (session_id, seq)
);
