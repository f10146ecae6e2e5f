//! Property tests of the incremental SSE parser that reads the Messages API stream: it never
//! panics on any bytes, however the socket splits them, and the split never changes the events.
//! (The router's properties live in `src/http/router_props.rs`: `find` is crate-private.)

use computer_use_server::anthropic::{SseEvent, SseParser};
use proptest::collection::vec;
use proptest::prelude::*;

/// Feeds `input` cut at `cuts` (positions, any order, duplicates allowed).
fn parse_split(input: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([input.len()]) {
        events.extend(parser.push(&input[start..cut]));
        start = cut;
    }
    events
}

fn parse_whole(input: &[u8]) -> Vec<SseEvent> {
    SseParser::new().push(input)
}

fn parse_bytewise(input: &[u8]) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    input.iter().flat_map(|b| parser.push(&[*b])).collect()
}

/// A line terminator as SSE allows them.
fn eol() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("\n"), Just("\r\n"), Just("\r")]
}

/// Field text: anything but CR and LF (non-ASCII and `:` included).
fn text() -> impl Strategy<Value = String> {
    "[^\r\n]{0,24}"
}

/// One event as the API could send it, with the event it must parse to.
fn event() -> impl Strategy<Value = (Vec<u8>, SseEvent)> {
    let extra = prop_oneof![
        text().prop_map(|t| format!(": {t}")),
        "[0-9]{1,4}".prop_map(|id| format!("id: {id}")),
        Just("retry: 100".to_string()),
    ];
    (
        proptest::option::of(text()),
        vec(text(), 1..4),
        vec(extra, 0..2),
        vec(eol(), 8),
    )
        .prop_map(|(name, data, extras, eols)| {
            let mut wire = String::new();
            let mut lines: Vec<String> = extras;
            if let Some(name) = &name {
                lines.push(format!("event: {name}"));
            }
            lines.extend(data.iter().map(|d| format!("data: {d}")));
            for (n, line) in lines.iter().enumerate() {
                wire.push_str(line);
                wire.push_str(eols[n % eols.len()]);
            }
            // The blank line that dispatches: after a lone CR, an LF would only complete it.
            let last = eols[(lines.len() - 1) % eols.len()];
            wire.push_str(if last == "\r" { "\r" } else { eols[7] });
            let event = match name {
                Some(name) if !name.is_empty() => name,
                _ => "message".to_string(),
            };
            let expected = SseEvent {
                event,
                data: data.join("\n"),
            };
            (wire.into_bytes(), expected)
        })
}

/// A chunk of a plausible stream: SSE syntax fragments, terminators and random bytes mixed.
fn noisy_piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"data: {\"type\":\"ping\"}".to_vec()),
        Just(b"event: message_start".to_vec()),
        Just(b"data:".to_vec()),
        Just(b":".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n\n".to_vec()),
        Just("é€😀".as_bytes().to_vec()),
        vec(any::<u8>(), 0..16),
    ]
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic_and_any_split_gives_the_same_events(
        input in vec(any::<u8>(), 0..1024),
        cuts in vec(any::<usize>(), 0..12),
    ) {
        let whole = parse_whole(&input);
        prop_assert_eq!(&parse_split(&input, &cuts), &whole);
        prop_assert_eq!(&parse_bytewise(&input), &whole);
    }

    #[test]
    fn sse_shaped_noise_parses_the_same_however_it_is_split(
        pieces in vec(noisy_piece(), 0..40),
        cuts in vec(any::<usize>(), 0..16),
    ) {
        let input = pieces.concat();
        let whole = parse_whole(&input);
        prop_assert_eq!(&parse_split(&input, &cuts), &whole);
        prop_assert_eq!(&parse_bytewise(&input), &whole);
    }

    #[test]
    fn well_formed_events_come_out_exactly_whatever_the_terminators_and_split(
        events in vec(event(), 0..8),
        cuts in vec(any::<usize>(), 0..16),
    ) {
        let input: Vec<u8> = events.iter().flat_map(|(wire, _)| wire.clone()).collect();
        let expected: Vec<SseEvent> = events.into_iter().map(|(_, event)| event).collect();
        prop_assert_eq!(&parse_split(&input, &cuts), &expected);
        prop_assert_eq!(&parse_bytewise(&input), &expected);
    }
}
