//! Pure text formatting for pages: times, ages, rates, latencies. One place so every page
//! says things the same way.

use time::OffsetDateTime;

/// `HH:MM:SS` (UTC) of a unix timestamp in seconds.
pub fn clock(unix: f64) -> String {
    match OffsetDateTime::from_unix_timestamp(unix.floor() as i64) {
        Ok(t) => format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()),
        Err(_) => "--:--:--".to_owned(),
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC), for things that may be days old (conditions, events).
pub fn date_time(unix: f64) -> String {
    match OffsetDateTime::from_unix_timestamp(unix.floor() as i64) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => "----".to_owned(),
    }
}

/// A short age: `42s`, `3m12s`, `2h05m`, `3d04h`.
pub fn age(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A per-second rate: `—` when unknown, `0/s`, `0.12/s`, `3.4/s`, `1234/s`.
pub fn rate(v: Option<f64>) -> String {
    match v {
        None => "\u{2014}".to_owned(),
        Some(v) if !v.is_finite() => "\u{2014}".to_owned(),
        Some(0.0) => "0/s".to_owned(),
        Some(v) if v < 10.0 => format!("{v:.2}/s"),
        Some(v) if v < 100.0 => format!("{v:.1}/s"),
        Some(v) => format!("{v:.0}/s"),
    }
}

/// A latency in seconds as `0.25 ms`, `12 ms`, `1.50 s`, or `—`.
pub fn latency(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() && v < 0.01 => format!("{:.2} ms", v * 1000.0),
        Some(v) if v.is_finite() && v < 1.0 => format!("{:.0} ms", v * 1000.0),
        Some(v) if v.is_finite() => format!("{v:.2} s"),
        _ => "\u{2014}".to_owned(),
    }
}

/// A count (`3`, `1.2k`).
pub fn count(v: f64) -> String {
    if !v.is_finite() {
        "\u{2014}".to_owned()
    } else if v < 10_000.0 {
        format!("{}", v.round() as i64)
    } else if v < 10_000_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else {
        format!("{:.1}M", v / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(clock(0.0), "00:00:00");
        assert_eq!(clock(3600.0 * 13.0 + 61.5), "13:01:01");
        assert_eq!(date_time(86_400.0), "1970-01-02 00:00:00");
        assert_eq!(age(5.0), "5s");
        assert_eq!(age(192.0), "3m12s");
        assert_eq!(age(7500.0), "2h05m");
        assert_eq!(age(90_000.0), "1d01h");
        assert_eq!(rate(None), "\u{2014}");
        assert_eq!(rate(Some(0.0)), "0/s");
        assert_eq!(rate(Some(0.123)), "0.12/s");
        assert_eq!(rate(Some(55.55)), "55.5/s");
        assert_eq!(latency(Some(0.00025)), "0.25 ms");
        assert_eq!(latency(Some(0.012)), "12 ms");
        assert_eq!(latency(Some(1.5)), "1.50 s");
        assert_eq!(latency(None), "\u{2014}");
        assert_eq!(count(3.0), "3");
        assert_eq!(count(12_345.0), "12.3k");
    }
}
