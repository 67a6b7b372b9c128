//! Timestamps in the form Celery writes them: ISO 8601 with microseconds and a `+00:00` offset.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// Formats an instant as Python's `datetime.isoformat()` does for an aware UTC datetime.
pub fn to_celery_iso(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let fmt = format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]+00:00"
    );
    t.format(&fmt)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// The current time as Celery writes `date_done`.
pub fn now_iso() -> String {
    to_celery_iso(OffsetDateTime::now_utc())
}

/// Parses an `eta`/`expires` value the way Celery does: RFC 3339 with `Z` or an offset; a value
/// without an offset is taken as UTC (protocol v2 rule).
pub fn parse_celery_iso(s: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let naive = format_description!(
        version = 2,
        "[year]-[month]-[day][first [T] [ ]][hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    PrimitiveDateTime::parse(s, &naive)
        .ok()
        .map(|p| p.assume_utc())
}

/// This machine's clock in seconds since the Unix epoch (what events carry as `timestamp`).
pub fn unix_now() -> f64 {
    unix_seconds(OffsetDateTime::now_utc())
}

/// Seconds since the Unix epoch, as a float (the unit of kombu's scores).
pub fn unix_seconds(t: OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python_isoformat() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_795_685_378_361_340_000).unwrap();
        assert_eq!(to_celery_iso(t), "2026-11-26T09:29:38.361340+00:00");
    }

    #[test]
    fn parses_offsets_z_and_naive() {
        let a = parse_celery_iso("2026-11-26T09:29:38.361340+00:00").unwrap();
        let b = parse_celery_iso("2026-11-26T09:29:38.361340Z").unwrap();
        let c = parse_celery_iso("2026-11-26T09:29:38.361340").unwrap();
        let d = parse_celery_iso("2026-11-26T10:29:38.361340+01:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a, d);
        assert!(parse_celery_iso("2026-11-26T09:29:38").is_some());
        assert!(parse_celery_iso("tomorrow").is_none());
    }
}
