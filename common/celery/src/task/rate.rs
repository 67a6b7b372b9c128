//! Rate limits, as Celery reads and applies them: [`parse`] reads a rate string the way
//! `celery.utils.time.rate` does (`"10/s"`, `"100/m"`, `"5/h"`, a bare number per second; empty
//! or zero is no limit), with Celery's error texts; [`TokenBucket`] is a Celery worker's
//! per-task bucket (kombu's `TokenBucket`, capacity 1, filled at the rate); [`Line`] spreads
//! the tasks told to wait over successive starts. Pure: every time is passed in (seconds, one
//! clock throughout). The fleet-wide limit, shared through Redis, is [`super::fleet`].

use serde_json::Value;

use crate::protocol::pyrepr;

/// Longest rate string read (Celery has no bound; `"1000000/m"` is 9 characters).
pub const MAX_RATE_LEN: usize = 64;
/// How far ahead a [`Line`] books: beyond, it starts again from the front (see [`Line::book`]).
pub const HORIZON_SECS: f64 = 300.0;

/// How far a clock may seem to go back between two takes of a [`TokenBucket`] before it is
/// taken for a step back of the clock itself (see `TokenBucket::fill`): more than a busy
/// worker's lag between taking two messages and asking for their starts.
pub const STEP_BACK_SECS: f64 = 5.0;

/// A rate limit: so many starts per second (positive, finite).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(f64);

impl Rate {
    /// Starts per second.
    pub fn per_second(self) -> f64 {
        self.0
    }

    /// Seconds between two starts.
    pub fn interval(self) -> f64 {
        1.0 / self.0
    }
}

/// Why a rate string is not one, worded as a Celery worker replies to `rate_limit` (its text is
/// that reply's `error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    /// Python's `float()` refused the number (or the value is out of bounds): Celery's
    /// `Invalid rate limit string: ValueError(...)`, holding the ValueError's message.
    #[error("Invalid rate limit string: {}", pyrepr::exception_repr("ValueError", &Value::String(.0.clone())))]
    Value(String),
    /// The unit is none of `s`, `m`, `h`: Celery's lookup raises `KeyError(unit)`, which its
    /// handler does not catch, so the reply is kombu's `repr(exc)`.
    #[error("{}", pyrepr::exception_repr("KeyError", &Value::String(.0.clone())))]
    Unit(String),
}

/// Reads a rate string as Celery's `rate()`: `n/s`, `n/m`, `n/h` or a bare `n` (per second),
/// `n` a Python float. `Ok(None)` is no limit (an empty string, or a rate of zero). Refused
/// besides Celery's errors (so that no bucket can break): longer than [`MAX_RATE_LEN`],
/// negative, infinite or NaN.
pub fn parse(s: &str) -> Result<Option<Rate>, RateError> {
    if s.is_empty() {
        return Ok(None);
    }
    if s.chars().count() > MAX_RATE_LEN {
        return Err(RateError::Value(format!(
            "rate limit string longer than {MAX_RATE_LEN} characters"
        )));
    }
    let (number, unit) = s.split_once('/').unwrap_or((s, ""));
    // Python looks the unit up before it converts the number.
    let per = match unit {
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => return Err(RateError::Unit(other.to_owned())),
    };
    let n = python_float(number).ok_or_else(|| {
        let shown = pyrepr::repr(&Value::String(number.to_owned()));
        RateError::Value(format!("could not convert string to float: {shown}"))
    })?;
    from_number(n / per)
}

/// A rate given as a number of starts per second (a JSON number in a `rate_limit` request):
/// zero is no limit; negative, infinite or NaN is refused.
pub fn from_number(per_second: f64) -> Result<Option<Rate>, RateError> {
    if per_second.is_nan() || per_second.is_infinite() {
        return Err(RateError::Value(
            "rate limit must be a finite number".into(),
        ));
    }
    if per_second < 0.0 {
        return Err(RateError::Value("rate limit must not be negative".into()));
    }
    // A rate so small that its interval does not fit a float is as good as none allowed at
    // all; kept, its interval is capped where it is used.
    Ok((per_second > 0.0).then_some(Rate(per_second)))
}

/// Python's `float(s)` for what it accepts in decimal: surrounding whitespace, a sign, `_`
/// only between digits, `inf`/`infinity`/`nan` in any case. `None` where Python raises.
fn python_float(s: &str) -> Option<f64> {
    // str.strip(): Unicode whitespace, which for Python also takes in \x1c-\x1f.
    let s = s.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c));
    let bytes = s.as_bytes();
    let digit_at = |i: Option<usize>| i.and_then(|i| bytes.get(i)).is_some_and(u8::is_ascii_digit);
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'_' && !(digit_at(i.checked_sub(1)) && digit_at(i.checked_add(1))) {
            return None;
        }
    }
    let plain: String = s.chars().filter(|c| *c != '_').collect();
    // Rust's grammar is Python's otherwise, both refusing hex, empty strings and a lone `.`.
    plain.parse().ok()
}

/// A Celery worker's bucket of one task type (kombu's `TokenBucket(rate, capacity=1)`): full
/// at first, one start takes its token, which comes back at the rate. So starts are at least
/// one interval apart, however many wait.
///
/// Unlike kombu's, a take after an idle time empties it for a whole interval (kombu's keeps its
/// stale timestamp while full, letting a second start through at once), and a refusal books
/// the one told to wait on a [`Line`]: the next refusal is told one interval later, as a
/// Celery worker's queue of waiting requests lets them through one per token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    rate: Rate,
    tokens: f64,
    /// When `tokens` was counted; `None` while full since it was made.
    at: Option<f64>,
    line: Line,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: Rate) -> Self {
        TokenBucket {
            rate,
            tokens: 1.0,
            at: None,
            line: Line::default(),
        }
    }

    /// The rate it fills at.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// What it holds at `now`. A `now` a little before the last one (messages taken together,
    /// handled out of order) counts as no time passed; one more than [`STEP_BACK_SECS`] before
    /// it is the clock stepped back (the server's, after a failover to a replica whose clock is
    /// behind): the bucket counts from `now` on, rather than filling only once the clock is back
    /// where it was, which would hold the task back that long.
    fn fill(&mut self, now: f64) {
        if let Some(at) = self.at {
            let passed = (now - at).max(0.0);
            self.tokens = (self.tokens + passed * self.rate.0).min(1.0);
            self.at = Some(match now < at - STEP_BACK_SECS {
                true => now,
                false => at.max(now),
            });
        }
    }

    /// A start at `now`: `Ok` takes the token; `Err(wait)` when there is none, `wait` the
    /// seconds until the start booked for this one (at least until a token is back).
    pub fn take(&mut self, now: f64) -> Result<(), f64> {
        self.fill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.at = Some(self.at.map_or(now, |at| at.max(now)));
            return Ok(());
        }
        let until_token = (1.0 - self.tokens) / self.rate.0;
        Err(self.line.book(now, until_token, self.rate.interval()))
    }

    /// Gives back the token of the last [`TokenBucket::take`] (its start did not happen).
    pub fn refund(&mut self) {
        self.tokens = (self.tokens + 1.0).min(1.0);
    }
}

/// The starts booked for those told to wait: each is told the first free start at least
/// `wait` away, one `interval` after the one booked before it, so that they come back one at
/// a time rather than all at the first free start (where all but one would be told to wait
/// again). It books at most [`HORIZON_SECS`] (or one interval, if longer) beyond the first
/// free start, then starts again from the front: a long backlog comes back a few per start
/// rather than days ahead, and a rate raised meanwhile takes effect within the horizon.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Line {
    /// The first start not booked yet.
    until: f64,
}

impl Line {
    /// Books the first start at least `wait` after `now`; returns the seconds until it.
    pub fn book(&mut self, now: f64, wait: f64, interval: f64) -> f64 {
        let first = now + wait.max(0.0);
        let mut slot = self.until.max(first);
        if slot - first > HORIZON_SECS.max(interval) {
            slot = first;
        }
        self.until = slot + interval;
        slot - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(s: &str) -> f64 {
        parse(s).unwrap().map_or(0.0, Rate::per_second)
    }

    #[test]
    fn rates_read_as_celerys() {
        assert_eq!(rate("10/s"), 10.0);
        assert_eq!(rate("10"), 10.0);
        assert_eq!(rate("10/"), 10.0);
        assert_eq!(rate("120/m"), 2.0);
        assert_eq!(rate("7200/h"), 2.0);
        assert_eq!(rate("0.5/s"), 0.5);
        assert_eq!(rate(" 1_0 /s"), 10.0);
        assert_eq!(rate("1e1"), 10.0);
        assert_eq!(rate("+.5"), 0.5);
        for none in ["", "0", "0/m", "0.0/h", "-0"] {
            assert_eq!(parse(none), Ok(None), "{none:?}");
        }
        assert!((parse("1/h").unwrap().unwrap().interval() - 3600.0).abs() < 1e-9);
    }

    #[test]
    fn invalid_rates_get_celerys_replies() {
        let text = |s: &str| parse(s).unwrap_err().to_string();
        assert_eq!(
            text("abc"),
            "Invalid rate limit string: ValueError(\"could not convert string to float: 'abc'\")"
        );
        assert_eq!(
            text("/s"),
            "Invalid rate limit string: ValueError(\"could not convert string to float: ''\")"
        );
        // The unit is looked up first; an unknown one is Python's uncaught KeyError.
        assert_eq!(text("abc/x"), "KeyError('x')");
        assert_eq!(text("10/ s"), "KeyError(' s')");
        assert_eq!(text("1/s/s"), "KeyError('s/s')");
        for bad in ["1__0", "_1", "1_", "1_.5", "0x10", ".", "1 0", "1e"] {
            assert!(matches!(parse(bad), Err(RateError::Value(_))), "{bad:?}");
        }
        for bad in ["-1/s", "nan", "inf/m", "-Infinity"] {
            assert!(
                text(bad).starts_with("Invalid rate limit string: ValueError('rate limit must"),
                "{bad:?}: {}",
                text(bad)
            );
        }
        let long = "1".repeat(MAX_RATE_LEN + 1);
        assert!(text(&long).contains("longer than 64"));
        assert_eq!(from_number(2.0).unwrap().unwrap().per_second(), 2.0);
        assert_eq!(from_number(0.0), Ok(None));
        assert!(from_number(f64::NAN).is_err() && from_number(-1.0).is_err());
    }

    #[test]
    fn a_bucket_lets_one_start_through_per_interval() {
        let mut b = TokenBucket::new(parse("4/s").unwrap().unwrap());
        assert_eq!(b.take(100.0), Ok(()), "full at first");
        assert_eq!(b.take(100.0), Err(0.25));
        // The next refusal is booked one interval after the first.
        assert_eq!(b.take(100.125), Err(0.375));
        // Three quarters of a token at 100.1875; a whole one at 100.25.
        assert!(b.take(100.1875).is_err());
        assert_eq!(b.take(100.25), Ok(()));
        assert!(b.take(100.375).is_err());
        // Idle for long, it holds one token, not more (capacity 1).
        assert_eq!(b.take(1000.0), Ok(()));
        assert!(b.take(1000.0).is_err());
        // A clock that steps back counts as no time passed.
        assert!(b.take(999.0).is_err());
        assert_eq!(b.take(1000.25), Ok(()));
        // A clock stepped back an hour: the bucket fills from there, not an hour later.
        assert!(b.take(1000.25 - 3600.0).is_err());
        assert_eq!(b.take(1000.5 - 3600.0), Ok(()));
        assert!(b.take(1000.5 - 3600.0).is_err());
        assert_eq!(b.take(1000.75 - 3600.0), Ok(()));
        // A refund gives the token back, never more than one.
        b.refund();
        b.refund();
        assert_eq!(b.take(1000.75 - 3600.0), Ok(()));
        assert!(b.take(1000.75 - 3600.0).is_err());
    }

    #[test]
    fn a_line_books_successive_starts_and_starts_again_past_its_horizon() {
        let mut line = Line::default();
        assert_eq!(line.book(10.0, 1.0, 1.0), 1.0);
        assert_eq!(line.book(10.0, 1.0, 1.0), 2.0);
        assert_eq!(line.book(10.5, 0.0, 1.0), 2.5);
        // A wait longer than the line: booked at its own time.
        assert_eq!(line.book(10.0, 9.0, 1.0), 9.0);
        assert_eq!(line.book(10.0, 0.0, 1.0), 10.0);
        // Past the horizon: from the front again.
        let mut line = Line::default();
        let waits: Vec<f64> = (0..=301).map(|_| line.book(0.0, 1.0, 1.0)).collect();
        assert_eq!(waits[300], 301.0);
        assert_eq!(waits[301], 1.0);
        // An interval longer than the horizon still books one interval on.
        let mut line = Line::default();
        assert_eq!(line.book(0.0, 10.0, 3600.0), 10.0);
        assert_eq!(line.book(0.0, 10.0, 3600.0), 3610.0);
    }
}
