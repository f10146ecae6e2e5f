//! Wall-clock formatting without a date crate: RFC 3339 timestamps and the system prompt's date.

use std::time::{SystemTime, UNIX_EPOCH};

/// Civil date and time in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
    /// 0 = Monday … 6 = Sunday.
    pub weekday: u32,
}

impl DateTime {
    pub fn now() -> DateTime {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        DateTime::from_unix_millis(since.as_millis() as i64)
    }

    pub fn from_unix_millis(millis: i64) -> DateTime {
        let secs = millis.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
            millis: millis.rem_euclid(1000) as u32,
            weekday: (days + 3).rem_euclid(7) as u32,
        }
    }

    /// `2025-06-04T09:05:01.123Z`
    pub fn to_rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        )
    }

    /// `Wednesday, June 4, 2025` (no zero padding), as the reference system prompt writes it.
    pub fn to_long_date(&self) -> String {
        const DAYS: [&str; 7] = [
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday",
        ];
        const MONTHS: [&str; 12] = [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ];
        format!(
            "{}, {} {}, {}",
            DAYS[self.weekday as usize],
            MONTHS[self.month as usize - 1],
            self.day,
            self.year
        )
    }
}

/// The current time as an RFC 3339 UTC timestamp with milliseconds.
pub fn now_rfc3339() -> String {
    DateTime::now().to_rfc3339()
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        // 2025-06-04T09:05:01.123Z was a Wednesday.
        let t = DateTime::from_unix_millis(1_749_027_901_123);
        assert_eq!(t.to_rfc3339(), "2025-06-04T09:05:01.123Z");
        assert_eq!(t.to_long_date(), "Wednesday, June 4, 2025");
        let epoch = DateTime::from_unix_millis(0);
        assert_eq!(epoch.to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(epoch.to_long_date(), "Thursday, January 1, 1970");
        let leap = DateTime::from_unix_millis(951_782_400_000);
        assert_eq!(leap.to_rfc3339(), "2000-02-29T00:00:00.000Z");
    }
}
