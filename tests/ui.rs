//! The web page at `/` and its files under `/ui/`: types, validators and 304s, gzip (decoded
//! here), traversal, and access without a token. Raw HTTP/1.1 requests, so the test controls
//! every request header (an HTTP client library would add and undo `Accept-Encoding`).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use support::{WAIT, spawn_server};

/// A response read whole, its body as bytes.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }
}

/// Sends `method path` with `headers` and `Connection: close`; reads until the server closes.
fn fetch(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Raw {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send");
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut raw = Raw {
        status,
        headers,
        body: bytes[end + 4..].to_vec(),
    };
    if raw.header("Transfer-Encoding") == Some("chunked") {
        raw.body = dechunk(&raw.body);
    }
    raw
}

/// The payload of a chunked body (tiny_http chunks large responses).
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&data[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.trim(), 16).expect("chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 2 + size + 2..];
    }
}

fn get(addr: SocketAddr, path: &str) -> Raw {
    fetch(addr, "GET", path, &[])
}

/// Decodes a single gzip member, checking its header, CRC-32 and size trailer.
fn gunzip(data: &[u8]) -> Vec<u8> {
    assert!(data.len() > 18, "too short for gzip");
    assert_eq!(&data[..3], &[0x1f, 0x8b, 8], "gzip magic and deflate");
    assert_eq!(data[3], 0, "no optional header fields");
    let body = &data[10..data.len() - 8];
    let out = miniz_oxide::inflate::decompress_to_vec(body).expect("valid deflate");
    let trailer = &data[data.len() - 8..];
    assert_eq!(trailer[..4], crc32(&out).to_le_bytes(), "CRC-32");
    assert_eq!(trailer[4..], (out.len() as u32).to_le_bytes(), "ISIZE");
    out
}

/// Bitwise CRC-32 (IEEE), independent of the server's table-driven one.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Every `/ui/…` URL in `text` (attributes in HTML) and every `./x.js` module import.
fn referenced_files(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for quote in ['"', '\''] {
        for piece in text.split(quote) {
            if let Some(name) = piece.strip_prefix("/ui/") {
                found.push(format!("/ui/{name}"));
            } else if let Some(name) = piece.strip_prefix("./").filter(|n| n.ends_with(".js")) {
                found.push(format!("/ui/{name}"));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn the_page_is_served_at_root_as_html_with_a_validator() {
    let server = spawn_server(&[]);
    let page = get(server.addr(), "/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.header("ETag").is_some_and(|t| t.starts_with('"')));
    assert_eq!(page.header("Cache-Control"), Some("no-cache"));
    assert!(page.header("Content-Security-Policy").is_some());
    let html = page.text();
    for testid in [
        "conversation",
        "session-list",
        "message-input",
        "desktop-screen",
    ] {
        assert!(
            html.contains(&format!("data-testid=\"{testid}\"")),
            "{testid}"
        );
    }
    assert_eq!(fetch(server.addr(), "POST", "/", &[]).status, 405);
}

#[test]
fn every_file_the_page_references_exists_with_its_type() {
    let server = spawn_server(&[]);
    let html = get(server.addr(), "/").text();
    let mut pending = referenced_files(&html);
    assert!(pending.contains(&"/ui/app.js".to_string()), "{pending:?}");
    assert!(pending.contains(&"/ui/app.css".to_string()), "{pending:?}");
    let mut seen = Vec::new();
    while let Some(path) = pending.pop() {
        if seen.contains(&path) {
            continue;
        }
        let file = get(server.addr(), &path);
        assert_eq!(file.status, 200, "{path}");
        let kind = file.header("Content-Type").unwrap().to_string();
        let expected = match path.rsplit('.').next().unwrap() {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "svg" => "image/svg+xml",
            other => panic!("unexpected file type {other} ({path})"),
        };
        assert_eq!(kind, expected, "{path}");
        assert_eq!(file.header("X-Content-Type-Options"), Some("nosniff"));
        if path.ends_with(".js") {
            pending.extend(referenced_files(&file.text()));
        }
        seen.push(path);
    }
    assert!(seen.len() >= 5, "{seen:?}");
}

#[test]
fn a_matching_etag_is_answered_304_and_head_has_no_body() {
    let server = spawn_server(&[]);
    for path in ["/", "/ui/app.js"] {
        let first = get(server.addr(), path);
        let etag = first.header("ETag").unwrap().to_string();
        let again = fetch(server.addr(), "GET", path, &[("If-None-Match", &etag)]);
        assert_eq!((again.status, again.body.len()), (304, 0), "{path}");
        assert_eq!(again.header("ETag"), Some(etag.as_str()));
        let weak = format!("\"other\", W/{etag}");
        let listed = fetch(server.addr(), "GET", path, &[("If-None-Match", &weak)]);
        assert_eq!(
            listed.status, 304,
            "{path}: a list with a weak form of our tag"
        );
        let stale = fetch(
            server.addr(),
            "GET",
            path,
            &[("If-None-Match", "\"stale\"")],
        );
        assert_eq!(stale.status, 200, "{path}");
        assert!(stale.body == first.body, "{path}: the same bytes again");
        let head = fetch(server.addr(), "HEAD", path, &[]);
        assert_eq!((head.status, head.body.len()), (200, 0), "{path}");
        assert_eq!(head.header("ETag"), Some(etag.as_str()));
    }
}

#[test]
fn gzip_is_sent_to_clients_that_accept_it_and_decodes_to_the_same_bytes() {
    let server = spawn_server(&[]);
    for path in ["/", "/ui/app.js", "/ui/app.css", "/novnc/core/rfb.js"] {
        let plain = get(server.addr(), path);
        assert_eq!(plain.status, 200, "{path}");
        assert_eq!(plain.header("Content-Encoding"), None, "{path}");
        assert_eq!(plain.header("Vary"), Some("Accept-Encoding"), "{path}");
        let accept = [("Accept-Encoding", "br;q=1.0, gzip;q=0.8, *;q=0.1")];
        let packed = fetch(server.addr(), "GET", path, &accept);
        assert_eq!(packed.status, 200, "{path}");
        assert_eq!(packed.header("Content-Encoding"), Some("gzip"), "{path}");
        assert_eq!(packed.header("Vary"), Some("Accept-Encoding"), "{path}");
        assert!(packed.body.len() < plain.body.len(), "{path} got smaller");
        assert!(gunzip(&packed.body) == plain.body, "{path}: gunzip differs");
        let etag = packed.header("ETag").unwrap();
        assert_ne!(
            Some(etag),
            plain.header("ETag"),
            "{path}: one tag per encoding"
        );
        let revalidate = [accept[0], ("If-None-Match", etag)];
        let again = fetch(server.addr(), "GET", path, &revalidate);
        assert_eq!((again.status, again.body.len()), (304, 0), "{path}");
        let second = fetch(server.addr(), "GET", path, &accept);
        assert_eq!(
            second.body, packed.body,
            "{path}: compressed once, served the same"
        );
    }
    let refused = fetch(
        server.addr(),
        "GET",
        "/",
        &[("Accept-Encoding", "gzip;q=0")],
    );
    assert_eq!(refused.header("Content-Encoding"), None);
    let icon = fetch(
        server.addr(),
        "GET",
        "/ui/icon.svg",
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(icon.status, 200);
    assert_eq!(
        icon.header("Content-Encoding"),
        None,
        "tiny files stay as they are"
    );
}

#[test]
fn traversal_and_unknown_files_are_refused_with_json() {
    let server = spawn_server(&[]);
    for path in [
        "/ui/../../etc/passwd",
        "/ui/%2e%2e/%2e%2e/etc/passwd",
        "/ui/..%2f..%2fCargo.toml",
        "/ui/%2fetc/passwd",
        "/ui/..%5cui.rs",
        "/ui/a%00.js",
        "/ui/../ui.rs",
        "/ui/",
        "/ui/nope.js",
        "/ui/index.html/x",
    ] {
        let resp = get(server.addr(), path);
        assert!(matches!(resp.status, 400 | 404), "{path}: {}", resp.status);
        assert!(
            resp.header("Content-Type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{path}"
        );
        let body = resp.text();
        assert!(
            !body.contains("root:") && !body.contains("[package]"),
            "{path} leaked"
        );
    }
}

#[test]
fn the_page_loads_without_a_token_while_the_api_needs_one() {
    let server = spawn_server(&[("API_TOKEN", "s3cret")]);
    assert_eq!(get(server.addr(), "/").status, 200);
    assert_eq!(get(server.addr(), "/ui/app.js").status, 200);
    assert_eq!(get(server.addr(), "/api/sessions").status, 401);
    let authorized = fetch(
        server.addr(),
        "GET",
        "/api/sessions",
        &[("Authorization", "Bearer s3cret")],
    );
    assert_eq!(authorized.status, 200);
}
