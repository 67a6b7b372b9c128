//! A task to publish, and the kombu envelope Python Celery 5.x would put on Redis for it.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::body::{Body, Embed};
use super::envelope::write::{HeaderFields, PropertyFields};
use super::envelope::{Envelope, CONTENT_TYPE_JSON};
use super::error::DecodeError;
use super::json::{self, Object};
use crate::clock;

/// The headers [`TaskMessage::to_json`] writes itself (and kombu's `compression`): extra
/// headers of these names would make duplicate JSON keys, so they are not sent.
const CELERY_HEADERS: &[&str] = &[
    "lang",
    "task",
    "id",
    "shadow",
    "eta",
    "expires",
    "group",
    "group_index",
    "retries",
    "timelimit",
    "root_id",
    "parent_id",
    "argsrepr",
    "kwargsrepr",
    "origin",
    "ignore_result",
    "replaced_task_nesting",
    "stamped_headers",
    "stamps",
    "compression",
    "redelivered",
];

/// A task to publish: what a producer decides; [`TaskMessage::to_json`] adds the rest.
#[derive(Debug, Clone)]
pub struct TaskMessage {
    /// The task's registered name.
    pub task: String,
    /// The task's id (a new UUID from [`TaskMessage::new`]).
    pub id: String,
    /// The queue it is published to.
    pub queue: String,
    /// Its arguments and what runs after it.
    pub body: Body,
    /// Its priority, 0-9 (clamped when sent).
    pub priority: i64,
    /// Not to run before this instant.
    pub eta: Option<OffsetDateTime>,
    /// Revoked instead of run after this instant.
    pub expires: Option<OffsetDateTime>,
    /// The id of the task that sends it.
    pub parent_id: Option<String>,
    /// The id of the first task of its workflow (`None`: its own id).
    pub root_id: Option<String>,
    /// The id of the group it is in.
    pub group: Option<String>,
    /// Its position in that group.
    pub group_index: Option<i64>,
    /// How many times it was retried before (a retry sends the same id again).
    pub retries: i64,
    /// Whether no result is stored for it.
    pub ignore_result: bool,
    /// Hard time limit in seconds (`time_limit`).
    pub time_limit: Option<f64>,
    /// Headers beyond Celery's own, sent at the top level of the message headers where Python
    /// Celery puts custom ones (OpenTelemetry's `traceparent`/`tracestate`); a name of Celery's
    /// own headers is never sent from here.
    pub headers: Map<String, Value>,
}

impl TaskMessage {
    /// A task sent from outside any task: a new id that is also its root.
    pub fn new(task: &str, queue: &str, kwargs: Map<String, Value>) -> Self {
        TaskMessage {
            task: task.to_owned(),
            id: Uuid::new_v4().to_string(),
            queue: queue.to_owned(),
            body: Body {
                args: Vec::new(),
                kwargs,
                embed: Embed::default(),
            },
            priority: 0,
            eta: None,
            expires: None,
            parent_id: None,
            root_id: None,
            group: None,
            group_index: None,
            retries: 0,
            ignore_result: false,
            time_limit: None,
            headers: Map::new(),
        }
    }

    /// Adds headers beyond Celery's own (see [`TaskMessage::headers`]).
    pub fn with_headers<K: Into<String>>(
        mut self,
        headers: impl IntoIterator<Item = (K, String)>,
    ) -> Self {
        for (name, value) in headers {
            self.headers.insert(name.into(), Value::String(value));
        }
        self
    }

    /// Makes this message a child of a running task (a callback or chain step), as Celery does.
    pub fn child_of(mut self, parent_id: &str, root_id: &str) -> Self {
        self.parent_id = Some(parent_id.to_owned());
        self.root_id = Some(root_id.to_owned());
        self
    }

    /// The kombu envelope exactly as Python Celery 5.x shapes it, as the JSON text pushed on
    /// the queue; `origin` is the sender's node name (Celery's `origin` header). Written
    /// directly by the envelope's own writer: no [`Envelope`] is built on the way.
    pub fn to_json(&self, origin: &str) -> String {
        let body = self.body.to_json();
        // Python's reprs, as Flower and `celery events` show them.
        let args_repr = super::pyrepr::args_repr(&self.body.args);
        let kwargs_repr = super::pyrepr::kwargs_repr(&self.body.kwargs);
        let eta = self.eta.map(clock::to_celery_iso);
        let expires = self.expires.map(clock::to_celery_iso);
        let mut prop_extra = Map::new();
        if let Some(expires) = self.expires {
            let ms = (expires - OffsetDateTime::now_utc())
                .whole_milliseconds()
                .max(0);
            prop_extra.insert("expiration".into(), Value::String(ms.to_string()));
        }
        let mut tag = Uuid::encode_buffer();
        let tag = Uuid::new_v4().hyphenated().encode_lower(&mut tag);
        let no_fields = Map::new();
        let size = body
            .len()
            .div_ceil(3)
            .saturating_mul(4)
            .saturating_add(args_repr.len())
            .saturating_add(kwargs_repr.len())
            .saturating_add(1024);
        let mut out = String::with_capacity(size);
        let mut o = Object::new(&mut out);
        super::b64::json_string(body.as_bytes(), o.key("body"));
        json::string(o.key("content-encoding"), "utf-8");
        json::string(o.key("content-type"), CONTENT_TYPE_JSON);
        HeaderFields {
            // Informational; Python workers run messages with any value (captured test A01).
            lang: Some("rust"),
            task: &self.task,
            id: &self.id,
            shadow: None,
            eta: eta.as_deref(),
            expires: expires.as_deref(),
            group: self.group.as_deref(),
            group_index: self.group_index,
            retries: self.retries,
            timelimit: [self.time_limit, None],
            root_id: Some(self.root_id.as_deref().unwrap_or(&self.id)),
            parent_id: self.parent_id.as_deref(),
            argsrepr: Some(&args_repr),
            kwargsrepr: Some(&kwargs_repr),
            origin: Some(origin),
            ignore_result: self.ignore_result,
            replaced_task_nesting: 0,
            stamped_headers: None,
            stamps: None,
            extra: self
                .headers
                .iter()
                .filter(|(k, _)| !CELERY_HEADERS.contains(&k.as_str())),
        }
        .write(o.key("headers"));
        PropertyFields {
            correlation_id: Some(&self.id),
            reply_to: Some(""),
            delivery_mode: Some(2),
            delivery_info: Some(("", &self.queue, no_fields.iter())),
            priority: Some(self.priority.clamp(0, 9)),
            body_encoding: Some("base64"),
            delivery_tag: Some(tag),
            extra: prop_extra.iter(),
        }
        .write(o.key("properties"));
        o.end();
        out
    }

    /// [`TaskMessage::to_json`] read back as an [`Envelope`], for a caller that changes a
    /// field before pushing it (tests, tools): what a consumer reads, not the message's own
    /// values. JSON has no infinity or NaN (a non-finite `time_limit` is sent as `null` and
    /// reads back as none), and floats come back as serde_json parses them (possibly one unit
    /// in the last place off).
    pub fn to_envelope(&self, origin: &str) -> Result<Envelope, DecodeError> {
        Envelope::from_json(self.to_json(origin).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{DecodeError, Message};
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    use serde_json::json;

    const ORIGIN: &str = "test@host";

    fn roundtrip(msg: &TaskMessage) -> Message {
        Message::decode(msg.to_json(ORIGIN).as_bytes()).expect("decodes")
    }

    #[test]
    fn produced_message_decodes_to_the_same_task() {
        let kwargs = json!({"order_id": "o-1", "items": []});
        let msg = TaskMessage::new(
            "process_order",
            "celery",
            kwargs.as_object().cloned().unwrap(),
        );
        let back = roundtrip(&msg);
        assert_eq!(back.task(), "process_order");
        assert_eq!(back.id(), msg.id);
        assert_eq!(back.body.kwargs, msg.body.kwargs);
        assert_eq!(
            back.envelope.headers.root_id.as_deref(),
            Some(msg.id.as_str())
        );
        assert_eq!(back.envelope.routing_key(), Some("celery"));
    }

    #[test]
    fn extra_headers_go_to_the_top_level_of_the_headers() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let msg = TaskMessage::new("t", "celery", Map::new()).with_headers([
            ("traceparent", tp.to_owned()),
            ("id", "not-the-id".to_owned()),
        ]);
        let json = msg.to_json(ORIGIN);
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["headers"]["traceparent"], json!(tp));
        assert_eq!(v["headers"]["id"], json!(msg.id));
        assert_eq!(json.matches("\"id\"").count(), 1, "{json}");
        let back = roundtrip(&msg);
        assert_eq!(
            back.envelope.headers.extra.get("traceparent"),
            Some(&json!(tp))
        );
    }

    #[test]
    fn the_text_is_serdes_text_of_the_envelope_it_reads_back_as() {
        // Written by hand field by field: held to the serde derive's text of what it decodes
        // to (field order, escaping, numbers), with every field a producer sets in use.
        let kwargs = json!({"note": "quote \" backslash \\ tab \t ünï 😀", "n": -3});
        let mut msg = TaskMessage::new("a.task", "q-1", kwargs.as_object().cloned().unwrap())
            .child_of("parent-1", "root-1")
            .with_headers([
                ("traceparent", "00-ab-cd-01".to_owned()),
                ("id", "spoof".to_owned()),
            ]);
        msg.body.args = vec![json!(1), json!(2.5), json!(null), json!(["x", {"y": true}])];
        msg.priority = 42;
        msg.eta = Some(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(2_000_000_000));
        msg.expires = Some(OffsetDateTime::now_utc() + time::Duration::hours(1));
        msg.group = Some("g-1".into());
        msg.group_index = Some(3);
        msg.retries = 2;
        msg.ignore_result = true;
        msg.time_limit = Some(30.5);
        let plain = TaskMessage::new("b", "celery", Map::new());
        for m in [&msg, &plain] {
            let text = m.to_json(ORIGIN);
            let env = Envelope::from_json(text.as_bytes()).unwrap();
            assert_eq!(text, serde_json::to_string(&env).unwrap());
            assert_eq!(text, env.to_json());
        }
        let env = msg.to_envelope(ORIGIN).unwrap();
        let h = &env.headers;
        assert_eq!(h.lang.as_deref(), Some("rust"));
        assert_eq!(
            (h.id.as_str(), h.task.as_str()),
            (msg.id.as_str(), "a.task")
        );
        assert_eq!(h.eta.as_deref(), Some("2033-05-18T03:33:20+00:00"));
        assert_eq!(h.root_id.as_deref(), Some("root-1"));
        assert_eq!(h.timelimit, [Some(30.5), None]);
        assert_eq!(h.extra.get("traceparent"), Some(&json!("00-ab-cd-01")));
        let p = &env.properties;
        assert_eq!(p.correlation_id.as_deref(), Some(msg.id.as_str()));
        assert_eq!(p.priority, Some(9), "clamped");
        assert_eq!(env.routing_key(), Some("q-1"));
        assert!(
            p.extra["expiration"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                > 3_500_000
        );
        let plain = plain.to_envelope(ORIGIN).unwrap();
        assert_eq!(plain.headers.root_id, Some(plain.headers.id.clone()));
        assert!(!plain.properties.extra.contains_key("expiration"));
        assert_ne!(plain.properties.delivery_tag, env.properties.delivery_tag);
    }

    #[test]
    fn a_non_finite_time_limit_is_sent_as_null_and_reads_back_as_none() {
        for limit in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
            let mut msg = TaskMessage::new("t", "celery", Map::new());
            msg.time_limit = Some(limit);
            let v: Value = serde_json::from_str(&msg.to_json(ORIGIN)).unwrap();
            assert_eq!(v["headers"]["timelimit"], json!([null, null]), "{limit}");
            let env = msg.to_envelope(ORIGIN).unwrap();
            assert_eq!(env.headers.timelimit, [None, None], "{limit}");
        }
    }

    #[test]
    fn two_element_body_is_refused() {
        let mut env = TaskMessage::new("t", "celery", Map::new())
            .to_envelope(ORIGIN)
            .unwrap();
        env.body = B64.encode(b"[[], {}]");
        assert!(matches!(env.decode_body(), Err(DecodeError::BodyShape)));
    }

    #[test]
    fn other_content_types_are_refused() {
        let mut env = TaskMessage::new("t", "celery", Map::new())
            .to_envelope(ORIGIN)
            .unwrap();
        env.content_type = Some("application/x-python-serialize".into());
        let err = env.decode_body().unwrap_err();
        assert!(matches!(err, DecodeError::ContentType(_)));
        // Stored in the task's FAILURE, read by a Python caller: no Rust `Some(...)` in it.
        assert_eq!(
            err.to_string(),
            "content-type 'application/x-python-serialize' is not accepted (only application/json)"
        );
        env.content_type = None;
        let err = env.decode_body().unwrap_err();
        assert!(matches!(err, DecodeError::ContentType(None)));
        assert!(err.to_string().starts_with("content-type none "), "{err}");
    }

    #[test]
    fn raw_body_without_body_encoding_is_accepted() {
        let mut env = TaskMessage::new("t", "celery", Map::new())
            .to_envelope(ORIGIN)
            .unwrap();
        env.properties.body_encoding = None;
        env.body = r#"[[1], {"a": 2}, {}]"#.into();
        let body = env.decode_body().unwrap();
        assert_eq!(body.args, vec![json!(1)]);
        assert_eq!(body.kwargs.get("a"), Some(&json!(2)));
    }

    #[test]
    fn unknown_compression_is_refused() {
        let mut env = TaskMessage::new("t", "celery", Map::new())
            .to_envelope(ORIGIN)
            .unwrap();
        env.headers
            .extra
            .insert("compression".into(), json!("application/x-brotli"));
        assert!(matches!(
            env.decode_body(),
            Err(DecodeError::Compression(_))
        ));
    }

    #[test]
    fn redelivered_flags_are_set_where_kombu_sets_them() {
        let mut env = TaskMessage::new("t", "celery", Map::new())
            .to_envelope(ORIGIN)
            .unwrap();
        env.mark_redelivered();
        let v: Value = serde_json::from_str(&env.to_json()).unwrap();
        assert_eq!(v["headers"]["redelivered"], json!(true));
        assert_eq!(v["properties"]["delivery_info"]["redelivered"], json!(true));
    }
}
