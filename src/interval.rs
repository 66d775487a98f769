//! Half-open UTC time intervals `[start, end)` and the UTC days they cover.
//!
//! Genesys writes intervals as ISO-8601 `start/end` with millisecond precision
//! (`2026-11-21T00:00:00.000Z/2026-11-22T00:00:00.000Z`); this module is the one place that
//! parses and formats them, so the client, the simulator and the pipeline agree on every edge.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, SecondsFormat, TimeZone, Utc};

/// Earliest instant we accept: Genesys Cloud (PureCloud) did not exist before this.
const EARLIEST: &str = "2010-01-01T00:00:00Z";

/// Why an interval or a time bound was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IntervalError {
    #[error("invalid time {input:?}: expected a date (2026-11-21, UTC midnight) or an RFC 3339 time (2026-11-21T06:00:00Z)")]
    BadTime { input: String },
    #[error("invalid interval {input:?}: expected ISO-8601 `start/end`, e.g. 2026-11-21T00:00:00.000Z/2026-11-22T00:00:00.000Z")]
    BadInterval { input: String },
    #[error("empty or reversed interval: start {start} is not before end {end}")]
    Reversed { start: String, end: String },
    #[error("interval start {start} is before 2010-01-01, earlier than any Genesys Cloud data")]
    TooEarly { start: String },
}

/// A half-open interval `[start, end)` in UTC, `start < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Interval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Interval {
    /// Builds `[start, end)`, refusing empty, reversed and pre-2010 intervals.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, IntervalError> {
        if start >= end {
            return Err(IntervalError::Reversed {
                start: format_millis(start),
                end: format_millis(end),
            });
        }
        let earliest = DateTime::parse_from_rfc3339(EARLIEST)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| IntervalError::BadTime {
                input: EARLIEST.into(),
            })?;
        if start < earliest {
            return Err(IntervalError::TooEarly {
                start: format_millis(start),
            });
        }
        Ok(Self { start, end })
    }

    /// The whole UTC day `date`.
    pub fn day(date: NaiveDate) -> Self {
        let start = day_start(date);
        Self {
            start,
            end: start + Duration::days(1),
        }
    }

    pub fn duration(&self) -> Duration {
        self.end - self.start
    }

    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }

    /// The intersection with `other`, if not empty.
    pub fn intersect(&self, other: &Interval) -> Option<Interval> {
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        (start < end).then_some(Interval { start, end })
    }

    /// True when both bounds fall on UTC midnight.
    pub fn is_whole_days(&self) -> bool {
        is_midnight(self.start) && is_midnight(self.end)
    }

    /// The UTC dates this interval touches, in order.
    pub fn dates(&self) -> Vec<NaiveDate> {
        let first = self.start.date_naive();
        // `end` is exclusive: an interval ending at midnight does not touch that day.
        let last = (self.end - Duration::milliseconds(1)).date_naive();
        first.iter_days().take_while(|d| *d <= last).collect()
    }

    /// The interval cut at UTC midnights: one piece per day touched, each inside its day.
    pub fn split_days(&self) -> Vec<Interval> {
        self.dates()
            .into_iter()
            .filter_map(|d| Interval::day(d).intersect(self))
            .collect()
    }

    /// Cuts the interval into consecutive pieces of at most `max` each (the last may be shorter).
    pub fn split_every(&self, max: Duration) -> Vec<Interval> {
        let max = max.max(Duration::milliseconds(1));
        let mut out = Vec::new();
        let mut start = self.start;
        while start < self.end {
            let end = (start + max).min(self.end);
            out.push(Interval { start, end });
            start = end;
        }
        out
    }

    /// Cuts the interval into `n` pieces of (nearly) equal length, on whole milliseconds.
    pub fn split_into(&self, n: u32) -> Vec<Interval> {
        let n = i64::from(n.max(1));
        let total = self.duration().num_milliseconds();
        let step = (total + n - 1) / n;
        self.split_every(Duration::milliseconds(step.max(1)))
    }

    /// The Genesys wire form: `2026-11-21T00:00:00.000Z/2026-11-22T00:00:00.000Z`.
    pub fn to_genesys(&self) -> String {
        format!("{}/{}", format_millis(self.start), format_millis(self.end))
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_genesys())
    }
}

impl FromStr for Interval {
    type Err = IntervalError;

    /// Parses the Genesys `start/end` form (each side an RFC 3339 time or a date).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once('/')
            .ok_or_else(|| IntervalError::BadInterval {
                input: s.to_string(),
            })?;
        let bad = |_| IntervalError::BadInterval {
            input: s.to_string(),
        };
        Interval::new(parse_time(a).map_err(bad)?, parse_time(b).map_err(bad)?)
    }
}

impl serde::Serialize for Interval {
    /// As Genesys writes intervals: `start/end` in millisecond UTC form.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_genesys())
    }
}

/// Parses a bound given by a user: `2026-11-21` (UTC midnight) or an RFC 3339 time.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, IntervalError> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(day_start(d));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| IntervalError::BadTime {
            input: s.to_string(),
        })
}

/// UTC midnight at the start of `date`.
pub fn day_start(date: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN))
}

/// `2026-11-21T00:00:00.000Z`: the millisecond UTC form Genesys sends and expects.
pub fn format_millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn is_midnight(t: DateTime<Utc>) -> bool {
    t.time() == NaiveTime::MIN
}

/// Serde adapter for `DateTime<Utc>` in the Genesys millisecond form.
pub mod serde_millis {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_millis(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }

    /// The same for `Option<DateTime<Utc>>` (use with `default` and `skip_serializing_if`).
    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            let s = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
            s.map(|s| {
                DateTime::parse_from_rfc3339(&s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    #[test]
    fn parses_dates_and_rfc3339() {
        assert_eq!(format_millis(t("2026-11-21")), "2026-11-21T00:00:00.000Z");
        assert_eq!(
            format_millis(t("2026-11-21T06:30:00+02:00")),
            "2026-11-21T04:30:00.000Z"
        );
        assert!(matches!(
            parse_time("21/11/2026"),
            Err(IntervalError::BadTime { .. })
        ));
    }

    #[test]
    fn genesys_form_round_trips() {
        let i: Interval = "2026-11-21T00:00:00.000Z/2026-11-22T00:00:00.000Z"
            .parse()
            .unwrap();
        assert_eq!(
            i.to_genesys(),
            "2026-11-21T00:00:00.000Z/2026-11-22T00:00:00.000Z"
        );
        assert!(i.is_whole_days());
        assert!("2026-11-21".parse::<Interval>().is_err());
    }

    #[test]
    fn refuses_reversed_empty_and_ancient() {
        assert!(matches!(
            Interval::new(t("2026-11-22"), t("2026-11-21")),
            Err(IntervalError::Reversed { .. })
        ));
        assert!(Interval::new(t("2026-11-22"), t("2026-11-22")).is_err());
        assert!(matches!(
            Interval::new(t("1999-01-01"), t("1999-01-02")),
            Err(IntervalError::TooEarly { .. })
        ));
    }

    #[test]
    fn days_are_half_open() {
        let i = Interval::new(t("2026-11-20T12:00:00Z"), t("2026-11-22")).unwrap();
        assert_eq!(
            i.dates(),
            vec![
                NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
                NaiveDate::from_ymd_opt(2026, 11, 21).unwrap()
            ]
        );
        let parts = i.split_days();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].start, t("2026-11-20T12:00:00Z"));
        assert_eq!(parts[0].end, t("2026-11-21"));
        assert_eq!(parts[1].end, t("2026-11-22"));
        assert!(!i.is_whole_days());
        assert!(i.contains(t("2026-11-21T23:59:59.999Z")));
        assert!(!i.contains(t("2026-11-22")));
    }

    #[test]
    fn splits_cover_the_interval_exactly() {
        let i = Interval::day(NaiveDate::from_ymd_opt(2026, 11, 21).unwrap());
        let parts = i.split_into(7);
        assert_eq!(parts.first().unwrap().start, i.start);
        assert_eq!(parts.last().unwrap().end, i.end);
        for w in parts.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        assert_eq!(parts.len(), 7);
    }
}
