//! Bearer-token check: `Authorization: Bearer <token>` or `?token=` (browsers cannot set
//! headers on EventSource/WebSocket). Tokens are compared in constant time and never logged.

use tiny_http::Request;

use super::error::{ApiError, ApiResult};
use super::request::{header, query_param};
use crate::config::Secret;

/// Ok when no token is configured or the request carries one of them.
pub(crate) fn check(request: &Request, tokens: &[Secret]) -> ApiResult<()> {
    if tokens.is_empty() {
        return Ok(());
    }
    let presented = bearer(request).or_else(|| query_param(request.url(), "token"));
    let Some(presented) = presented else {
        return Err(ApiError::unauthorized());
    };
    // Check every token (no early exit) so timing does not say which one nearly matched.
    let matched = tokens.iter().fold(false, |found, token| {
        found | constant_time_eq(presented.as_bytes(), token.expose().as_bytes())
    });
    if matched {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

/// Which configured token the request carries, if any (the rate-limit key).
pub(crate) fn token_index(request: &Request, tokens: &[Secret]) -> Option<usize> {
    let presented = bearer(request).or_else(|| query_param(request.url(), "token"))?;
    tokens
        .iter()
        .position(|token| constant_time_eq(presented.as_bytes(), token.expose().as_bytes()))
}

fn bearer(request: &Request) -> Option<String> {
    let value = header(request, "Authorization")?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn equal_only_when_identical() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
