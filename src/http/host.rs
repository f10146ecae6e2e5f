//! DNS-rebinding guard. Without a token the server trusts anything that can reach its
//! loopback port; a web page whose domain is re-pointed at 127.0.0.1 would reach it too, with
//! the browser sending that domain as `Host`. So when the server listens on loopback without a
//! token, a request must name a loopback host (`localhost`, `127.x.x.x`, `[::1]`).

use std::net::IpAddr;

use tiny_http::Request;

use super::error::{ApiError, ApiResult};
use super::request::header;
use crate::config::Config;

/// Ok unless the guard applies and `Host` names something other than this machine.
pub(crate) fn check(request: &Request, config: &Config) -> ApiResult<()> {
    if !config.http.api_tokens.is_empty() || !config.binds_loopback() {
        return Ok(());
    }
    match header(request, "Host") {
        Some(host) if is_loopback_host(host) => Ok(()),
        Some(host) => Err(ApiError::new(
            403,
            "forbidden_host",
            format!(
                "Host {host:?} is not this machine; without API_TOKEN the server only answers \
                 requests addressed to localhost (protection against DNS rebinding)"
            ),
        )),
        // HTTP/1.0 clients may omit Host; they cannot be a browser page.
        None => Ok(()),
    }
}

/// `localhost`, `*.localhost`, or a loopback IP, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default().to_string(),
        None => host
            .rsplit_once(':')
            .map_or(host.clone(), |(name, _)| name.to_string()),
    };
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_pass_and_others_do_not() {
        for ok in [
            "localhost",
            "localhost:8000",
            "127.0.0.1:8000",
            "127.1.2.3",
            "[::1]:8000",
            "app.localhost:1",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example:8000",
            "192.168.1.5:8000",
            "localhost.evil.com",
            "[::2]:80",
            "",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
