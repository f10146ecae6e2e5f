//! Reading a request: headers, the query string, and a size-capped JSON body.

use std::io::Read;

use serde_json::Value;
use tiny_http::Request;

use super::error::{ApiError, ApiResult};

/// The value of a header (first occurrence, case-insensitive name).
pub(crate) fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// The path without the query string.
pub(crate) fn path(url: &str) -> &str {
    url.split_once('?').map_or(url, |(path, _)| path)
}

/// The decoded `key=value` pairs of the query string.
pub(crate) fn query(url: &str) -> Vec<(String, String)> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

/// The first value of a query parameter.
pub(crate) fn query_param(url: &str, name: &str) -> Option<String> {
    query(url)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// An optional non-negative integer query parameter bounded by `max` (422 otherwise).
pub(crate) fn query_u64(url: &str, name: &str, default: u64, max: u64) -> ApiResult<u64> {
    let Some(raw) = query_param(url, name) else {
        return Ok(default);
    };
    match raw.trim().parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(ApiError::invalid(
            name,
            format!("must be an integer from 0 to {max}, got {raw:?}"),
        )),
    }
}

/// `skip` (default 0) and `limit` (default 100, at most 1000, at least 1).
pub(crate) fn paging(url: &str) -> ApiResult<(u64, u64)> {
    let skip = query_u64(url, "skip", 0, i64::MAX as u64)?;
    let limit = query_u64(url, "limit", 100, 1000)?;
    if limit == 0 {
        return Err(ApiError::invalid("limit", "must be from 1 to 1000"));
    }
    Ok((skip, limit))
}

fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| {
            std::str::from_utf8(h)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        });
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a JSON route accepts this `Content-Type`: missing (curl-friendly) or
/// `application/json` with any parameters (`; charset=utf-8`) or a `+json` suffix.
pub(crate) fn is_json_content_type(value: Option<&str>) -> bool {
    let Some(value) = value else { return true };
    let mime = value.split(';').next().unwrap_or("").trim();
    mime.is_empty()
        || mime.eq_ignore_ascii_case("application/json")
        || (mime.len() > 5 && mime[mime.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// Reads the body as JSON: `None` when empty. 415 for a non-JSON content type, 413 past
/// `max` bytes (declared or actually sent, chunked included), 400 when it does not parse.
pub(crate) fn json_body(request: &mut Request, max: usize) -> ApiResult<Option<Value>> {
    let content_type = header(request, "Content-Type");
    if !is_json_content_type(content_type) {
        return Err(ApiError::unsupported_media(content_type.unwrap_or("")));
    }
    if request.body_length().is_some_and(|len| len > max) {
        return Err(ApiError::too_large(max));
    }
    let bytes = read_capped(request.as_reader(), max)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|err| ApiError::bad_request(format!("malformed JSON body: {err}")))
}

fn read_capped(reader: &mut dyn Read, max: usize) -> ApiResult<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| ApiError::bad_request(format!("could not read the body: {err}")))?;
    if bytes.len() > max {
        return Err(ApiError::too_large(max));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_decoded_and_path_stripped() {
        let url = "/api/sessions?skip=2&limit=5&token=a%2Bb+c";
        assert_eq!(path(url), "/api/sessions");
        assert_eq!(query_param(url, "token").as_deref(), Some("a+b c"));
        assert_eq!(paging(url).unwrap(), (2, 5));
        assert_eq!(paging("/x").unwrap(), (0, 100));
    }

    #[test]
    fn bad_paging_names_the_parameter() {
        for url in ["/x?limit=1001", "/x?limit=0", "/x?skip=-1", "/x?limit=ten"] {
            let err = paging(url).unwrap_err();
            assert_eq!(err.status, 422, "{url}");
        }
        assert!(paging("/x?skip=a").unwrap_err().detail.starts_with("skip"));
    }

    #[test]
    fn json_content_types() {
        assert!(is_json_content_type(None));
        assert!(is_json_content_type(Some(
            "application/json; charset=utf-8"
        )));
        assert!(is_json_content_type(Some("Application/JSON")));
        assert!(is_json_content_type(Some("application/merge-patch+json")));
        assert!(!is_json_content_type(Some("text/plain")));
        assert!(!is_json_content_type(Some(
            "application/x-www-form-urlencoded"
        )));
    }
}
