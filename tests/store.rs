//! The store contract: every behaviour below runs against SQLite (a temp file per test) and
//! PostgreSQL (a fresh schema per test in `TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`). PostgreSQL tests fail, never skip, when the
//! server cannot be reached.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use computer_use_server::config::DatabaseUrl;
use computer_use_server::store::{self, NewSession, Store, StoreError, Usage};
use serde_json::{Value, json};
use support::db::{TestDb, pg_admin, pg_base_url};

// ---------------------------------------------------------------------------------------------
// Fixtures

fn new_session(id: &str) -> NewSession {
    NewSession {
        id: id.to_string(),
        title: None,
        model: "claude-sonnet-4-5".to_string(),
        provider: "anthropic".to_string(),
        system_prompt_suffix: "Be brief.".to_string(),
        tool_version: "computer_use_20250124".to_string(),
        settings: json!({"max_tokens": 4096, "thinking_budget": null, "only_n_most_recent_images": 3}),
    }
}

fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn text(s: &str) -> Value {
    json!([{"type": "text", "text": s}])
}

fn created(store: &dyn Store) -> String {
    let id = id();
    store.create_session(&new_session(&id)).unwrap();
    id
}

/// Runs each contract function once per backend: `sqlite::<name>` and `postgres::<name>`.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { let db = super::TestDb::sqlite(); super::$name(&db); } )*
        }
        mod postgres {
            $( #[test] fn $name() { let db = super::TestDb::postgres(); super::$name(&db); } )*
        }
    };
}

contract!(
    ping_succeeds_and_names_the_backend,
    nul_characters_in_tool_output_are_stored_not_rejected,
    created_session_reads_back_with_defaults,
    sessions_list_newest_first_with_skip_and_limit,
    creating_an_existing_session_id_is_a_conflict,
    deleting_a_session_cascades_to_messages_and_events,
    status_and_title_updates_persist,
    usage_accumulates_across_calls,
    writes_to_a_missing_session_are_not_found,
    duplicate_message_id_is_a_conflict,
    queued_messages_are_claimed_fifo_and_join_the_conversation,
    list_messages_pages_across_conversation_then_queue,
    concurrent_claimers_never_get_the_same_message,
    concurrent_event_appends_get_contiguous_unique_seqs,
    message_and_event_seqs_are_independent_per_session,
    list_events_returns_events_after_seq_up_to_limit,
    sessions_to_resume_are_running_or_have_queued_messages,
    json_round_trips_exactly_including_large_base64,
    reopening_keeps_data_and_applies_no_migration_twice,
    concurrent_opens_of_a_fresh_database_all_succeed,
);

// ---------------------------------------------------------------------------------------------
// The contract

fn ping_succeeds_and_names_the_backend(db: &TestDb) {
    let store = db.open();
    store.ping().unwrap();
    let expected = match db.url {
        DatabaseUrl::Sqlite(_) => "sqlite",
        DatabaseUrl::Postgres(_) => "postgres",
    };
    assert_eq!(store.backend(), expected);
}

fn created_session_reads_back_with_defaults(db: &TestDb) {
    let store = db.open();
    let new = new_session(&id());
    let created = store.create_session(&new).unwrap();
    assert_eq!(created.status, "idle");
    assert_eq!(created.usage, Usage::default());
    assert!(created.created_at.ends_with('Z'), "{}", created.created_at);
    let read = store.get_session(&new.id).unwrap().expect("session exists");
    assert_eq!(read, created);
    assert_eq!(read.settings, new.settings);
    assert_eq!(read.system_prompt_suffix, "Be brief.");
    assert!(store.get_session("no-such-session").unwrap().is_none());
}

fn sessions_list_newest_first_with_skip_and_limit(db: &TestDb) {
    let store = db.open();
    // Created in a tight loop: many share a millisecond, so this also checks the tie-break.
    let ids: Vec<String> = (0..6).map(|_| created(&*store)).collect();
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    let listed = |skip, limit| -> Vec<String> {
        store
            .list_sessions(skip, limit)
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect()
    };
    assert_eq!(listed(0, 100), newest_first);
    assert_eq!(listed(1, 2), newest_first[1..3].to_vec());
    assert_eq!(listed(5, 10), newest_first[5..].to_vec());
    assert!(listed(6, 10).is_empty());
    assert!(listed(0, 0).is_empty());
    assert_eq!(listed(0, u64::MAX).len(), 6);
}

fn creating_an_existing_session_id_is_a_conflict(db: &TestDb) {
    let store = db.open();
    let id = created(&*store);
    let err = store.create_session(&new_session(&id)).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.list_sessions(0, 10).unwrap().len(), 1);
}

fn deleting_a_session_cascades_to_messages_and_events(db: &TestDb) {
    let store = db.open();
    let doomed = created(&*store);
    let kept = created(&*store);
    let message_id = id();
    store
        .insert_message(&doomed, &message_id, "user", &text("hi"), false)
        .unwrap();
    store
        .insert_message(&doomed, &id(), "user", &text("queued"), true)
        .unwrap();
    store
        .append_event(&doomed, "status", &json!({"type": "status"}))
        .unwrap();
    store
        .append_event(&kept, "status", &json!({"type": "status"}))
        .unwrap();

    assert!(store.delete_session(&doomed).unwrap());
    assert!(!store.delete_session(&doomed).unwrap());
    assert!(store.get_session(&doomed).unwrap().is_none());
    assert!(store.conversation(&doomed).unwrap().is_empty());
    assert!(store.list_messages(&doomed, 0, 100).unwrap().is_empty());
    assert!(store.list_events(&doomed, 0, 100).unwrap().is_empty());
    assert!(!store.sessions_to_resume().unwrap().contains(&doomed));
    // The message row is gone too: its id is free again.
    store
        .insert_message(&kept, &message_id, "user", &text("reuse"), false)
        .unwrap();
    assert_eq!(store.list_events(&kept, 0, 100).unwrap().len(), 1);
}

fn status_and_title_updates_persist(db: &TestDb) {
    let store = db.open();
    let id = created(&*store);
    store.set_session_status(&id, "running").unwrap();
    let session = store.get_session(&id).unwrap().unwrap();
    assert_eq!(session.status, "running");
    assert!(session.updated_at >= session.created_at);

    store.set_title_if_empty(&id, "First title").unwrap();
    store.set_title_if_empty(&id, "Second title").unwrap();
    assert_eq!(
        store.get_session(&id).unwrap().unwrap().title.as_deref(),
        Some("First title")
    );

    let mut titled = new_session(&crate::id());
    titled.title = Some("Given".into());
    store.create_session(&titled).unwrap();
    store.set_title_if_empty(&titled.id, "Other").unwrap();
    assert_eq!(
        store
            .get_session(&titled.id)
            .unwrap()
            .unwrap()
            .title
            .as_deref(),
        Some("Given")
    );
}

fn usage_accumulates_across_calls(db: &TestDb) {
    let store = db.open();
    let id = created(&*store);
    let call = Usage {
        input_tokens: 1000,
        output_tokens: 200,
        cache_creation_input_tokens: 30,
        cache_read_input_tokens: 4,
    };
    store.add_usage(&id, &call).unwrap();
    store.add_usage(&id, &call).unwrap();
    store
        .add_usage(
            &id,
            &Usage {
                input_tokens: 5,
                ..Usage::default()
            },
        )
        .unwrap();
    let usage = store.get_session(&id).unwrap().unwrap().usage;
    assert_eq!(
        usage,
        Usage {
            input_tokens: 2005,
            output_tokens: 400,
            cache_creation_input_tokens: 60,
            cache_read_input_tokens: 8,
        }
    );
}

fn writes_to_a_missing_session_are_not_found(db: &TestDb) {
    let store = db.open();
    let missing = "missing-session";
    let not_found = |err: StoreError| match err {
        StoreError::NotFound(what) => assert_eq!(what, missing),
        other => panic!("expected NotFound, got {other:?}"),
    };
    not_found(
        store
            .insert_message(missing, &id(), "user", &text("x"), false)
            .unwrap_err(),
    );
    not_found(
        store
            .insert_message(missing, &id(), "user", &text("x"), true)
            .unwrap_err(),
    );
    not_found(
        store
            .append_event(missing, "status", &json!({}))
            .unwrap_err(),
    );
    not_found(store.set_session_status(missing, "running").unwrap_err());
    not_found(store.add_usage(missing, &Usage::default()).unwrap_err());
    assert!(store.claim_queued_message(missing).unwrap().is_none());
    assert_eq!(store.queued_count(missing).unwrap(), 0);
    assert!(!store.delete_session(missing).unwrap());
}

fn duplicate_message_id_is_a_conflict(db: &TestDb) {
    let store = db.open();
    let session = created(&*store);
    let message = id();
    store
        .insert_message(&session, &message, "user", &text("a"), false)
        .unwrap();
    let err = store
        .insert_message(&session, &message, "user", &text("b"), true)
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // The failed insert consumed no seq.
    let next = store
        .insert_message(&session, &id(), "assistant", &text("c"), false)
        .unwrap();
    assert_eq!(next.seq, Some(2));
    assert_eq!(store.queued_count(&session).unwrap(), 0);
}

fn queued_messages_are_claimed_fifo_and_join_the_conversation(db: &TestDb) {
    let store = db.open();
    let s = created(&*store);
    let first = store
        .insert_message(&s, &id(), "user", &text("first"), false)
        .unwrap();
    assert_eq!(first.seq, Some(1));
    let a = store
        .insert_message(&s, &id(), "user", &text("a"), true)
        .unwrap();
    let b = store
        .insert_message(&s, &id(), "user", &text("b"), true)
        .unwrap();
    assert_eq!((a.seq, b.seq), (None, None));
    let reply = store
        .insert_message(&s, &id(), "assistant", &text("reply"), false)
        .unwrap();
    assert_eq!(reply.seq, Some(2));
    assert_eq!(store.queued_count(&s).unwrap(), 2);
    assert_eq!(store.get_session(&s).unwrap().unwrap().status, "idle");

    let order = |msgs: Vec<store::MessageRecord>| -> Vec<(String, Option<i64>)> {
        msgs.into_iter().map(|m| (m.id, m.seq)).collect()
    };
    assert_eq!(
        order(store.list_messages(&s, 0, 100).unwrap()),
        vec![
            (first.id.clone(), Some(1)),
            (reply.id.clone(), Some(2)),
            (a.id.clone(), None),
            (b.id.clone(), None)
        ]
    );
    assert_eq!(store.conversation(&s).unwrap().len(), 2);

    let claimed = store
        .claim_queued_message(&s)
        .unwrap()
        .expect("a is queued");
    assert_eq!((claimed.id.as_str(), claimed.seq), (a.id.as_str(), Some(3)));
    assert_eq!(claimed.content, text("a"));
    assert_eq!(claimed.role, "user");
    assert_eq!(claimed.created_at, a.created_at);
    // The claim marks the session running in the same transaction, so a crash right after it
    // still resumes the turn.
    assert_eq!(store.get_session(&s).unwrap().unwrap().status, "running");
    assert_eq!(store.queued_count(&s).unwrap(), 1);
    assert_eq!(
        order(store.conversation(&s).unwrap()),
        vec![
            (first.id.clone(), Some(1)),
            (reply.id.clone(), Some(2)),
            (a.id.clone(), Some(3))
        ]
    );

    assert_eq!(
        store.claim_queued_message(&s).unwrap().unwrap().seq,
        Some(4)
    );
    assert!(store.claim_queued_message(&s).unwrap().is_none());
    assert_eq!(store.queued_count(&s).unwrap(), 0);
    let conversation = store.conversation(&s).unwrap();
    let seqs: Vec<i64> = conversation.iter().filter_map(|m| m.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert_eq!(conversation[3].id, b.id);
}

fn list_messages_pages_across_conversation_then_queue(db: &TestDb) {
    let store = db.open();
    let s = created(&*store);
    let mut expected = Vec::new();
    let mut queued = Vec::new();
    for i in 0..5 {
        // Interleave arrivals so arrival order differs from listing order.
        queued.push(
            store
                .insert_message(&s, &id(), "user", &text(&format!("q{i}")), true)
                .unwrap()
                .id,
        );
        expected.push(
            store
                .insert_message(&s, &id(), "assistant", &text(&format!("c{i}")), false)
                .unwrap()
                .id,
        );
    }
    expected.extend(queued);
    let page = |skip, limit| -> Vec<String> {
        store
            .list_messages(&s, skip, limit)
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect()
    };
    assert_eq!(page(0, 100), expected);
    assert_eq!(page(3, 4), expected[3..7].to_vec());
    assert_eq!(page(7, 100), expected[7..].to_vec());
    assert!(page(10, 5).is_empty());
    assert_eq!(page(0, u64::MAX).len(), 10);
}

fn concurrent_claimers_never_get_the_same_message(db: &TestDb) {
    let store = db.open();
    let s = created(&*store);
    let queued: Vec<String> = (0..40)
        .map(|i| {
            store
                .insert_message(&s, &id(), "user", &text(&i.to_string()), true)
                .unwrap()
                .id
        })
        .collect();
    let claimed: Vec<(String, i64)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    while let Some(m) = store.claim_queued_message(&s).unwrap() {
                        mine.push((m.id, m.seq.expect("claimed has seq")));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let ids: HashSet<&String> = claimed.iter().map(|(id, _)| id).collect();
    assert_eq!(claimed.len(), 40, "every message claimed exactly once");
    assert_eq!(ids.len(), 40);
    let mut seqs: Vec<i64> = claimed.iter().map(|(_, seq)| *seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
    // Claims are FIFO: the conversation keeps arrival order.
    let conversation: Vec<String> = store
        .conversation(&s)
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(conversation, queued);
    assert_eq!(store.queued_count(&s).unwrap(), 0);
}

fn concurrent_event_appends_get_contiguous_unique_seqs(db: &TestDb) {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 50;
    let store = db.open();
    let s = created(&*store);
    let mut seqs: Vec<i64> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (store, s) = (&store, &s);
                scope.spawn(move || {
                    (0..PER_THREAD)
                        .map(|i| {
                            let payload = json!({"type": "text", "thread": t, "i": i});
                            store.append_event(s, "text", &payload).unwrap()
                        })
                        .collect::<Vec<i64>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                let mine = w.join().unwrap();
                assert!(
                    mine.windows(2).all(|p| p[0] < p[1]),
                    "one thread's seqs increase"
                );
                mine
            })
            .collect()
    });
    seqs.sort_unstable();
    let total = (THREADS * PER_THREAD) as i64;
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
    let stored = store.list_events(&s, 0, 10_000).unwrap();
    let stored_seqs: Vec<i64> = stored.iter().map(|e| e.seq).collect();
    assert_eq!(stored_seqs, (1..=total).collect::<Vec<_>>());
}

fn message_and_event_seqs_are_independent_per_session(db: &TestDb) {
    let store = db.open();
    let (s1, s2) = (created(&*store), created(&*store));
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (store, s1, s2) = (&store, &s1, &s2);
            scope.spawn(move || {
                for i in 0..20 {
                    let session = if i % 2 == 0 { s1 } else { s2 };
                    if t % 2 == 0 {
                        store
                            .append_event(session, "status", &json!({"t": t}))
                            .unwrap();
                    } else {
                        let queued = i % 3 == 0;
                        store
                            .insert_message(session, &id(), "user", &text("m"), queued)
                            .unwrap();
                    }
                }
            });
        }
    });
    for s in [&s1, &s2] {
        let events: Vec<i64> = store
            .list_events(s, 0, 1000)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(events, (1..=40).collect::<Vec<_>>());
        let seqs: Vec<i64> = store
            .conversation(s)
            .unwrap()
            .iter()
            .filter_map(|m| m.seq)
            .collect();
        let queued = store.queued_count(s).unwrap();
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
        assert_eq!(seqs.len() as u64 + queued, 40);
    }
}

fn list_events_returns_events_after_seq_up_to_limit(db: &TestDb) {
    let store = db.open();
    let s = created(&*store);
    let other = created(&*store);
    for i in 1..=10 {
        let payload = json!({"type": "text", "text": format!("e{i}"), "session_id": s});
        assert_eq!(store.append_event(&s, "text", &payload).unwrap(), i);
    }
    assert_eq!(store.append_event(&other, "status", &json!({})).unwrap(), 1);
    let seqs = |after, limit| -> Vec<i64> {
        store
            .list_events(&s, after, limit)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    assert_eq!(seqs(0, 100), (1..=10).collect::<Vec<_>>());
    assert_eq!(seqs(7, 100), vec![8, 9, 10]);
    assert_eq!(seqs(2, 3), vec![3, 4, 5]);
    assert!(seqs(10, 100).is_empty());
    assert_eq!(seqs(-5, 2), vec![1, 2]);
    assert_eq!(seqs(0, u64::MAX).len(), 10);
    let event = &store.list_events(&s, 4, 1).unwrap()[0];
    assert_eq!(event.session_id, s);
    assert_eq!(event.kind, "text");
    assert_eq!(event.payload["text"], "e5");
    assert!(event.created_at.ends_with('Z'));
}

fn sessions_to_resume_are_running_or_have_queued_messages(db: &TestDb) {
    let store = db.open();
    let idle = created(&*store);
    let running = created(&*store);
    let queued = created(&*store);
    let drained = created(&*store);
    let finished = created(&*store);
    store
        .insert_message(&idle, &id(), "user", &text("done"), false)
        .unwrap();
    store.set_session_status(&running, "running").unwrap();
    store
        .insert_message(&queued, &id(), "user", &text("waiting"), true)
        .unwrap();
    store
        .insert_message(&queued, &id(), "user", &text("waiting too"), true)
        .unwrap();
    store
        .insert_message(&drained, &id(), "user", &text("claimed"), true)
        .unwrap();
    // Claiming marks the session running (a crash now must still resume its turn) ...
    store.claim_queued_message(&drained).unwrap().unwrap();
    store.set_session_status(&finished, "running").unwrap();
    store.set_session_status(&finished, "idle").unwrap();
    let resume = store.sessions_to_resume().unwrap();
    assert_eq!(
        resume,
        vec![running.clone(), queued.clone(), drained.clone()],
        "each once, oldest first"
    );
    // ... and once its turn has ended it is not resumed again.
    store.set_session_status(&drained, "idle").unwrap();
    assert_eq!(store.sessions_to_resume().unwrap(), vec![running, queued]);
}

fn nul_characters_in_tool_output_are_stored_not_rejected(db: &TestDb) {
    // `cat` of a binary file puts U+0000 in bash output; PostgreSQL's jsonb cannot hold it,
    // so it may come back as U+FFFD there, but it must never fail the write.
    let store = db.open();
    store.create_session(&new_session("s-nul")).unwrap();
    let content = json!([{"type": "text", "text": "before\u{0}after"}]);
    store
        .insert_message("s-nul", "m-nul", "user", &content, false)
        .unwrap();
    let payload = json!({"type": "tool_result", "output": "x\u{0}y"});
    store
        .append_event("s-nul", "tool_result", &payload)
        .unwrap();
    let text = store.conversation("s-nul").unwrap()[0].content[0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text == "before\u{0}after" || text == "before\u{fffd}after",
        "{text:?}"
    );
    let events = store.list_events("s-nul", 0, 10).unwrap();
    assert!(
        events[0].payload["output"]
            .as_str()
            .unwrap()
            .starts_with('x')
    );
}

fn json_round_trips_exactly_including_large_base64(db: &TestDb) {
    let store = db.open();
    let big: String = (0..6 * 1024 * 1024)
        .map(|i| {
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[i % 64] as char
        })
        .collect();
    let content = json!([
        {"type": "text", "text": "héllo wörld ✓ 日本語 🦀 مرحبا \"quoted\" back\\slash\nnew\tline \u{1} \u{7f}"},
        {"type": "thinking", "thinking": "hmm", "signature": "EqQBCkYIBxgCKkD+/="},
        {"type": "tool_use", "id": "toolu_01", "name": "computer",
         "input": {"action": "left_click", "coordinate": [512, 384], "nested": {"a": [[], {}, [null, true, false]]}}},
        {"type": "tool_result", "tool_use_id": "toolu_01", "is_error": false,
         "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": big}}]},
        {"numbers": [0, -1, 9_007_199_254_740_993_i64, i64::MAX, i64::MIN, 0.5, -2.25, 1e-7, 123456.789]},
        {"empty_string": "", "key with spaces and ünïcode": "v"}
    ]);
    let s = created(&*store);
    store
        .insert_message(&s, &id(), "user", &content, false)
        .unwrap();
    store
        .insert_message(&s, &id(), "user", &content, true)
        .unwrap();
    assert_eq!(store.conversation(&s).unwrap()[0].content, content);
    let listed = store.list_messages(&s, 0, 10).unwrap();
    assert!(listed.iter().all(|m| m.content == content));
    assert_eq!(
        store.claim_queued_message(&s).unwrap().unwrap().content,
        content
    );

    let payload =
        json!({"type": "tool_result", "base64_image": big, "output": "✓\n", "error": null});
    store.append_event(&s, "tool_result", &payload).unwrap();
    assert_eq!(store.list_events(&s, 0, 1).unwrap()[0].payload, payload);

    let mut new = new_session(&id());
    new.settings = json!({"max_tokens": 128000, "thinking_budget": 1024, "ratio": 0.75, "name": "ñ 🦀", "list": [1, [2, {"x": null}]]});
    new.title = Some("Tïtle 🦀".into());
    store.create_session(&new).unwrap();
    let read = store.get_session(&new.id).unwrap().unwrap();
    assert_eq!(
        (read.settings, read.title),
        (new.settings.clone(), new.title.clone())
    );
    let listed = store.list_sessions(0, 1).unwrap();
    assert_eq!(listed[0].settings, new.settings);
}

fn reopening_keeps_data_and_applies_no_migration_twice(db: &TestDb) {
    let s = {
        let store = db.open();
        let s = created(&*store);
        store.append_event(&s, "status", &json!({})).unwrap();
        s
    };
    for expected_seq in [2, 3] {
        let store = db.open();
        assert!(store.get_session(&s).unwrap().is_some());
        let seq = store.append_event(&s, "status", &json!({})).unwrap();
        assert_eq!(seq, expected_seq, "the event counter survives reopening");
    }
    assert_eq!(migration_versions(db), vec![1]);
}

fn concurrent_opens_of_a_fresh_database_all_succeed(db: &TestDb) {
    let stores: Vec<Arc<dyn Store>> = std::thread::scope(|scope| {
        let openers: Vec<_> = (0..4).map(|_| scope.spawn(|| db.open())).collect();
        openers.into_iter().map(|o| o.join().unwrap()).collect()
    });
    let s = created(&*stores[0]);
    assert!(stores[3].get_session(&s).unwrap().is_some());
    assert_eq!(migration_versions(db), vec![1]);
}

/// The versions recorded in `schema_migrations`, read behind the store's back.
fn migration_versions(db: &TestDb) -> Vec<i64> {
    let sql = "SELECT version FROM schema_migrations ORDER BY version";
    match &db.url {
        DatabaseUrl::Sqlite(path) => {
            let conn = rusqlite::Connection::open(path).unwrap();
            let mut stmt = conn.prepare(sql).unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        }
        DatabaseUrl::Postgres(url) => {
            let mut client = pg_admin(url).unwrap();
            client
                .query(sql, &[])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Backend-specific failure modes

#[test]
fn sqlite_unusable_path_is_an_unavailable_error_not_a_panic() {
    let file = std::env::temp_dir().join(format!("cus-store-file-{}", uuid::Uuid::new_v4()));
    std::fs::write(&file, b"not a directory").unwrap();
    let url = DatabaseUrl::Sqlite(file.join("sub").join("store.db"));
    let err = store::open(&url, 2)
        .err()
        .expect("a file as parent directory cannot work");
    let _ = std::fs::remove_file(&file);
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[test]
fn sqlite_file_that_is_not_a_database_is_an_error_not_a_panic() {
    let db = TestDb::sqlite();
    let DatabaseUrl::Sqlite(path) = &db.url else {
        unreachable!()
    };
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, vec![0x5a_u8; 8192]).unwrap();
    let err = store::open(&db.url, 2)
        .err()
        .expect("garbage is not a database");
    assert!(err.to_string().contains("not a database"), "{err}");
}

#[test]
fn sqlite_in_memory_database_is_one_shared_database() {
    let store = store::open(&DatabaseUrl::Sqlite(":memory:".into()), 4).unwrap();
    let s = created(&*store);
    std::thread::scope(|scope| {
        scope.spawn(|| store.append_event(&s, "status", &json!({})).unwrap());
    });
    assert_eq!(store.list_events(&s, 0, 10).unwrap().len(), 1);
}

#[test]
fn sqlite_database_from_a_newer_binary_is_refused() {
    let db = TestDb::sqlite();
    drop(db.open());
    let DatabaseUrl::Sqlite(path) = &db.url else {
        unreachable!()
    };
    rusqlite::Connection::open(path)
        .unwrap()
        .execute(
            "INSERT INTO schema_migrations VALUES (999, 'future.sql', 'then')",
            [],
        )
        .unwrap();
    let err = store::open(&db.url, 2).err().expect("newer schema refused");
    assert!(
        matches!(&err, StoreError::Migration(why) if why.contains("999")),
        "{err:?}"
    );
}

#[test]
fn postgres_unreachable_server_is_unavailable_quickly_without_leaking_the_password() {
    let url = DatabaseUrl::Postgres("postgres://app:s3cr3t-pw@127.0.0.1:1/app".into());
    let started = Instant::now();
    let err = store::open(&url, 4)
        .err()
        .expect("nothing listens on port 1");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    match err {
        StoreError::Unavailable(why) => assert!(!why.contains("s3cr3t-pw"), "{why}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[test]
fn postgres_wrong_password_is_unavailable_without_leaking_it() {
    // Trust auth accepts any password; a missing database still fails at connect time.
    let base = pg_base_url();
    let config: ::postgres::Config = base.parse().unwrap();
    let host = match config.get_hosts().first() {
        Some(::postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres").to_string();
    let url = format!("postgres://{user}:hunter2-secret@{host}:{port}/no_such_db_for_store_tests");
    let err = store::open(&DatabaseUrl::Postgres(url), 2)
        .err()
        .expect("database does not exist");
    match err {
        StoreError::Unavailable(why) => assert!(!why.contains("hunter2-secret"), "{why}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
