//! Property tests of [`find`] (crate-private, so they live beside it): it never panics on any
//! method or path, an `{id}` only ever matches a hyphenated UUID, and every answer agrees with
//! an independent reading of [`route_list`] (which route, public or not, which methods).

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

/// What `find` should answer, worked out from `route_list()` alone.
#[derive(Debug, PartialEq)]
enum Expected {
    Found {
        id: String,
        tail: String,
        public: bool,
    },
    WrongMethod(Vec<&'static str>),
    NotFound,
}

fn is_uuid(segment: &str) -> bool {
    segment.len() == 36
        && segment.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `Some((id, tail))` when `pattern` matches `path` (one trailing `/` ignored).
fn oracle_match(pattern: &str, path: &str) -> Option<(String, String)> {
    let path = match path.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed,
        _ => path,
    };
    if let Some(prefix) = pattern.strip_suffix("/{*}") {
        let tail = match path.strip_prefix(prefix)? {
            "" => "",
            rest => rest.strip_prefix('/')?,
        };
        return Some((String::new(), tail.to_string()));
    }
    let (pattern, path): (Vec<&str>, Vec<&str>) =
        (pattern.split('/').collect(), path.split('/').collect());
    if pattern.len() != path.len() {
        return None;
    }
    let mut id = String::new();
    for (want, got) in pattern.iter().zip(&path) {
        match *want {
            "{id}" if is_uuid(got) => id = got.to_ascii_lowercase(),
            "{id}" => return None,
            literal if literal == *got => {}
            _ => return None,
        }
    }
    Some((id, String::new()))
}

fn oracle(method: &str, path: &str) -> Expected {
    let mut allowed = Vec::new();
    for route in route_list() {
        let Some((id, tail)) = oracle_match(route.pattern, path) else {
            continue;
        };
        if route.method == method {
            let public = route.public;
            return Expected::Found { id, tail, public };
        }
        allowed.push(route.method);
    }
    if allowed.is_empty() {
        return Expected::NotFound;
    }
    allowed.push("OPTIONS");
    Expected::WrongMethod(allowed)
}

fn answer(method: &Method, path: &str) -> Expected {
    match find(method, path) {
        Ok(Match::Found { params, public, .. }) => Expected::Found {
            id: params.id,
            tail: params.tail,
            public,
        },
        Ok(Match::WrongMethod(allow)) => Expected::WrongMethod(allow),
        Err(err) => {
            assert_eq!(err.status, 404, "{err}");
            Expected::NotFound
        }
    }
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET".to_string()),
        Just("POST".to_string()),
        Just("DELETE".to_string()),
        Just("HEAD".to_string()),
        Just("PUT".to_string()),
        Just("PATCH".to_string()),
        "[A-Z]{1,8}",
    ]
}

/// A UUID in any case, or something close to one.
fn id_like() -> impl Strategy<Value = String> {
    let uuid = any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).hyphenated().to_string());
    prop_oneof![
        uuid.clone(),
        uuid.clone().prop_map(|u| u.to_uppercase()),
        uuid.clone().prop_map(|u| u.replace('-', "")),
        uuid.clone().prop_map(|u| format!("{{{u}}}")),
        uuid.clone().prop_map(|u| format!("urn:uuid:{u}")),
        (uuid.clone(), 0..36usize, "[g-z+ %]").prop_map(|(u, i, c)| {
            let mut chars: Vec<char> = u.chars().collect();
            chars[i] = c.chars().next().unwrap_or('z');
            chars.into_iter().collect()
        }),
        (uuid, any::<bool>()).prop_map(|(u, longer)| if longer {
            u + "0"
        } else {
            u[1..].to_string()
        }),
    ]
}

/// A path segment: the route table's words, ids, near-ids, and junk.
fn segment() -> impl Strategy<Value = String> {
    const WORDS: &[&str] = &[
        "api",
        "sessions",
        "ws",
        "vnc",
        "novnc",
        "docs",
        "ui",
        "health",
        "metrics",
        "openapi.json",
        "messages",
        "events",
        "stream",
        "cancel",
        "info",
        "",
        "..",
        "%2e%2e",
    ];
    prop_oneof![
        4 => proptest::sample::select(WORDS).prop_map(str::to_string),
        2 => id_like(),
        1 => "[^/]{0,12}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (vec(segment(), 0..6), any::<bool>()).prop_map(|(segments, slash)| {
            format!("/{}{}", segments.join("/"), if slash { "/" } else { "" })
        }),
        1 => ".{0,40}",
        // Near misses of real routes: one segment swapped for another word, id or junk.
        3 => (route_path(), any::<usize>(), segment()).prop_map(|((_, path), n, swap)| {
            let mut segments: Vec<&str> = path.split('/').collect();
            let n = 1 + n % segments.len().saturating_sub(1).max(1);
            if n < segments.len() {
                segments[n] = &swap;
            }
            segments.join("/")
        }),
    ]
}

/// A route from the table made concrete: a fresh UUID for `{id}`, any rest for `{*}`.
fn route_path() -> impl Strategy<Value = (RouteInfo, String)> {
    let routes = route_list();
    (
        0..routes.len(),
        any::<u128>(),
        any::<bool>(),
        "[a-z0-9./%-]{0,20}",
    )
        .prop_map(move |(n, id, upper, tail)| {
            let id = uuid::Uuid::from_u128(id).hyphenated().to_string();
            let id = if upper { id.to_uppercase() } else { id };
            let route = routes[n];
            (
                route,
                route.pattern.replace("{id}", &id).replace("{*}", &tail),
            )
        })
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
    fn any_method_and_path_gets_the_answer_the_route_list_implies(
        method in method(),
        path in path(),
    ) {
        let parsed: Method = method.parse().expect("any token is a method");
        prop_assert_eq!(answer(&parsed, &path), oracle(&method, &path), "{} {:?}", method, path);
    }

    #[test]
    fn only_uuids_are_ids(method in method(), path in path()) {
        let parsed: Method = method.parse().expect("any token is a method");
        if let Ok(Match::Found { params, .. }) = find(&parsed, &path) {
            prop_assert!(params.id.is_empty() || is_uuid(&params.id), "{:?}", params);
            prop_assert_eq!(params.id.to_ascii_lowercase(), params.id.clone());
        }
    }

    #[test]
    fn every_route_of_the_list_is_found_with_its_public_flag(
        (route, path) in route_path(),
    ) {
        let method: Method = route.method.parse().expect("method");
        let Ok(Match::Found { params, public, .. }) = find(&method, &path) else {
            return Err(TestCaseError::fail(format!("{route:?}: {path} not found")));
        };
        prop_assert_eq!(public, route.public, "{}", path);
        if route.pattern.contains("{id}") {
            prop_assert!(path.to_ascii_lowercase().contains(&params.id), "{}", path);
        }
    }
}
