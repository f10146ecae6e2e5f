//! The SDK retry delays (reference §10.5): a wait the server asked for (`retry-after-ms`,
//! `retry-after`) when it is within (0, 60] s, else exponential back-off with jitter.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::AnthropicError;

/// The longest server-requested wait honoured; longer (or zero) falls back to back-off.
const MAX_SERVER_DELAY: Duration = Duration::from_secs(60);
const INITIAL_BACKOFF_SECS: f64 = 0.5;
const MAX_BACKOFF_SECS: f64 = 8.0;

/// The wait before retry number `retries + 1` after `error`.
pub(crate) fn delay_for(error: &AnthropicError, retries: u32, jitter: &mut Jitter) -> Duration {
    if let AnthropicError::Api {
        retry_after: Some(wait),
        ..
    } = error
        && !wait.is_zero()
        && *wait <= MAX_SERVER_DELAY
    {
        return *wait;
    }
    let base = (INITIAL_BACKOFF_SECS * 2f64.powi(retries.min(16) as i32)).min(MAX_BACKOFF_SECS);
    Duration::from_secs_f64(base * (1.0 - 0.25 * jitter.next_unit()))
}

/// Parses `retry-after-ms` (milliseconds) or else `retry-after` (seconds, or an HTTP date).
pub(crate) fn parse_retry_after(
    retry_after_ms: Option<&str>,
    retry_after: Option<&str>,
    now: SystemTime,
) -> Option<Duration> {
    if let Some(ms) = retry_after_ms.and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = retry_after?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses an IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_http_date(value: &str) -> Option<SystemTime> {
    let mut parts = value.split_whitespace();
    let _weekday = parts.next()?;
    let day: i64 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let year: i64 = parts.next()?.parse().ok()?;
    let time = parts.next()?;
    if parts.next()? != "GMT" {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let mut hms = time.split(':').map(|n| n.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    let secs = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A small xorshift64* generator for back-off jitter (no cryptographic use).
pub(crate) struct Jitter(u64);

impl Jitter {
    /// Seeded from the clock and std's per-process random hash keys, so sessions differ.
    pub(crate) fn from_time() -> Jitter {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let salt = RandomState::new().build_hasher().finish();
        Jitter((nanos ^ salt) | 1)
    }

    /// A number in [0, 1).
    pub(crate) fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let n = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (n >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(retry_after: Option<Duration>) -> AnthropicError {
        AnthropicError::Api {
            status: 529,
            error_type: "overloaded_error".into(),
            message: String::new(),
            request_id: None,
            retry_after,
            should_retry: None,
        }
    }

    #[test]
    fn backoff_doubles_from_half_a_second_up_to_eight_with_jitter() {
        let mut jitter = Jitter::from_time();
        for (retries, base) in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)] {
            for _ in 0..50 {
                let d = delay_for(&api(None), retries, &mut jitter).as_secs_f64();
                assert!(d > base * 0.75 - 1e-9 && d <= base + 1e-9, "{retries}: {d}");
            }
        }
    }

    #[test]
    fn server_delay_is_used_only_within_sixty_seconds() {
        let mut jitter = Jitter::from_time();
        let wait = Duration::from_millis(1500);
        assert_eq!(delay_for(&api(Some(wait)), 3, &mut jitter), wait);
        let long = delay_for(&api(Some(Duration::from_secs(61))), 0, &mut jitter);
        assert!(long <= Duration::from_millis(500));
        let zero = delay_for(&api(Some(Duration::ZERO)), 0, &mut jitter);
        assert!(zero > Duration::from_millis(370));
    }

    #[test]
    fn retry_after_headers_parse_ms_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after(Some("250"), Some("9"), now),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_retry_after(None, Some("1.5"), now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after(None, Some("Sun, 06 Nov 1994 08:49:47 GMT"), now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(parse_retry_after(None, Some("soon"), now), None);
        assert_eq!(parse_retry_after(None, None, now), None);
    }
}
