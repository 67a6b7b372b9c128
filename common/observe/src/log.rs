//! The log format (`LOG_FORMAT=text|json`) on env_logger, and the fields a JSON line carries
//! beyond `time`, `level`, `target` and `message`: `task_id`, `root_id`, `trace_id`, `order_id`,
//! where known, from the [`scope`] (a tokio task-local) the worker sets around each delivery and
//! the services around each request. `trace_id` falls back to [`crate::trace::current`].

use std::cell::RefCell;
use std::future::Future;
use std::io::Write as _;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Longest value of a field (they may come from hostile messages); longer ones are cut.
pub const MAX_FIELD: usize = 200;

/// How each log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// env_logger's own line: `[time LEVEL target] message`.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(format!("{other:?} is not text or json")),
        }
    }
}

/// Starts logging to stderr in `format`, filtered by `RUST_LOG` (default `info`). A second
/// call does nothing.
pub fn init(format: Format) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if format == Format::Json {
        builder.format(|buf, record| {
            let line = json_line(
                OffsetDateTime::now_utc(),
                record.level(),
                record.target(),
                record.args(),
            );
            writeln!(buf, "{line}")
        });
    }
    let _ = builder.try_init();
}

/// What is known about the work a log line is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    /// The id of the task a worker is running (cut to [`MAX_FIELD`], as every field).
    pub task_id: Option<String>,
    /// The first task of its workflow (Celery's `root_id` header; a lone task's own id).
    pub root_id: Option<String>,
    /// The W3C trace id of the task or request (when unset, [`crate::trace::current`]'s).
    pub trace_id: Option<String>,
    /// The task's `order_id` keyword argument (the shop's tasks), when it has one.
    pub order_id: Option<String>,
}

impl Fields {
    fn entries(&self) -> [(&'static str, &Option<String>); 4] {
        [
            ("task_id", &self.task_id),
            ("root_id", &self.root_id),
            ("trace_id", &self.trace_id),
            ("order_id", &self.order_id),
        ]
    }
}

tokio::task_local! {
    static FIELDS: RefCell<Fields>;
}

/// Runs `future` with `fields` in every JSON line it logs (changeable inside with [`update`]).
///
/// A plain function returning the task-local's own future, not an `async fn`: an `async fn`
/// wrapper keeps both the future it was given and the one it awaits, doubling the size of every
/// future wrapped in it (a spawned delivery was copied at 27 KB instead of 5).
pub fn scope<F: Future>(fields: Fields, future: F) -> impl Future<Output = F::Output> {
    FIELDS.scope(RefCell::new(fields), future)
}

/// Changes the fields of the enclosing [`scope`]; does nothing outside one.
pub fn update(change: impl FnOnce(&mut Fields)) {
    let _ = FIELDS.try_with(|f| {
        if let Ok(mut f) = f.try_borrow_mut() {
            change(&mut f);
        }
    });
}

/// The fields of the enclosing [`scope`], if any.
pub fn current() -> Option<Fields> {
    FIELDS
        .try_with(|f| f.try_borrow().ok().map(|f| f.clone()))
        .ok()
        .flatten()
}

/// One JSON object (no newline): `time`, `level`, `target`, `message`, then the known fields,
/// in that order.
pub fn json_line(
    time: OffsetDateTime,
    level: log::Level,
    target: &str,
    message: &std::fmt::Arguments<'_>,
) -> String {
    let time = time.format(&Rfc3339).unwrap_or_default();
    let message = message.to_string();
    let mut line = String::with_capacity(96 + message.len());
    line.push('{');
    let mut put = |name: &str, value: &str| {
        if line.len() > 1 {
            line.push(',');
        }
        // A string's JSON is its quoted, escaped self (control characters, quotes, newlines);
        // serializing a string cannot fail.
        line.push_str(&serde_json::to_string(name).unwrap_or_default());
        line.push(':');
        line.push_str(&serde_json::to_string(value).unwrap_or_default());
    };
    put("time", &time);
    put("level", level.as_str());
    put("target", target);
    put("message", &message);
    let fields = current().unwrap_or_default();
    for (name, value) in fields.entries() {
        if let Some(v) = value {
            put(name, cut(v));
        }
    }
    if fields.trace_id.is_none() {
        if let Some(trace_id) = crate::trace::current_trace_id() {
            put("trace_id", &trace_id);
        }
    }
    line.push('}');
    line
}

/// `s` as a field value: at most [`MAX_FIELD`] bytes (a hostile id is not copied whole).
pub fn field(s: &str) -> String {
    cut(s).to_owned()
}

/// At most [`MAX_FIELD`] bytes, cut on a character boundary.
fn cut(s: &str) -> &str {
    if s.len() <= MAX_FIELD {
        return s;
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{self, TraceContext};
    use serde_json::Value;

    /// A future holding 4 KB across an await, as a delivery's does.
    async fn big() -> usize {
        let buf = [1u8; 4096];
        tokio::task::yield_now().await;
        buf.iter().map(|&b| usize::from(b)).sum()
    }

    #[test]
    fn the_scopes_add_a_few_bytes_to_the_future_they_wrap_not_its_size_again() {
        // As `async fn`s they kept both the future given and the one awaited: each doubled it,
        // and tokio copies a spawned future whole (a delivery went from 5 KB to 27 KB).
        let alone = std::mem::size_of_val(&big());
        let logged = scope(Fields::default(), big());
        assert!(std::mem::size_of_val(&logged) < alone + 256, "{alone}");
        let both = trace::scope(None, scope(Fields::default(), big()));
        assert!(std::mem::size_of_val(&both) < alone + 512, "{alone}");
    }

    fn line(message: &str) -> Value {
        let at = time::macros::datetime!(2024-05-01 12:00:00.5 UTC);
        let text = json_line(
            at,
            log::Level::Info,
            "worker::execute",
            &format_args!("{message}"),
        );
        assert!(!text.contains('\n'), "{text}");
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn formats_parse() {
        assert_eq!("text".parse(), Ok(Format::Text));
        assert_eq!(" json ".parse(), Ok(Format::Json));
        for bad in ["", "JSONL", "logfmt", "jsonx"] {
            assert!(bad.parse::<Format>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_line_outside_any_scope_has_the_four_fields() {
        let v = line("hello \"quoted\"\nsecond line");
        assert_eq!(v["time"], "2024-05-01T12:00:00.5Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "worker::execute");
        assert_eq!(v["message"], "hello \"quoted\"\nsecond line");
        assert_eq!(v.as_object().unwrap().len(), 4);
        let at = time::macros::datetime!(2024-05-01 12:00:00 UTC);
        let text = json_line(at, log::Level::Warn, "t", &format_args!("m\u{1}"));
        assert_eq!(
            text,
            r#"{"time":"2024-05-01T12:00:00Z","level":"WARN","target":"t","message":"m\u0001"}"#
        );
    }

    #[tokio::test]
    async fn a_scope_adds_what_is_known() {
        let fields = Fields {
            task_id: Some("t-1".into()),
            root_id: Some("r-1".into()),
            ..Fields::default()
        };
        scope(fields, async {
            let v = line("m");
            assert_eq!(
                (v["task_id"].as_str(), v["root_id"].as_str()),
                (Some("t-1"), Some("r-1"))
            );
            assert!(v.get("order_id").is_none() && v.get("trace_id").is_none());
            update(|f| f.order_id = Some("o".repeat(MAX_FIELD + 10)));
            assert_eq!(
                line("m")["order_id"].as_str().map(str::len),
                Some(MAX_FIELD)
            );
        })
        .await;
    }

    #[tokio::test]
    async fn the_trace_id_comes_from_the_trace_scope_too() {
        let ctx = TraceContext::root();
        let id = ctx.trace_id();
        trace::scope(Some(ctx), async {
            assert_eq!(line("m")["trace_id"].as_str(), Some(id.as_str()));
            scope(
                Fields {
                    trace_id: Some("explicit".into()),
                    ..Fields::default()
                },
                async { assert_eq!(line("m")["trace_id"], "explicit") },
            )
            .await;
        })
        .await;
    }

    #[test]
    fn cut_keeps_characters_whole() {
        let s = "é".repeat(MAX_FIELD);
        assert_eq!(cut(&s).len(), MAX_FIELD);
        assert!(cut(&s).chars().all(|c| c == 'é'));
    }
}
