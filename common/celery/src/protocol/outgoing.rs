//! A task to publish, and the kombu envelope Python Celery 5.x would put on Redis for it.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::body::{Body, Embed};
use super::envelope::{
    empty_object, DeliveryInfo, Envelope, Headers, Properties, CONTENT_TYPE_JSON,
};
use crate::clock;

/// The headers [`TaskMessage::to_envelope`] writes itself (and kombu's `compression`): extra
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

/// A task to publish: what a producer decides; [`TaskMessage::to_envelope`] adds the rest.
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

    /// Builds the kombu envelope exactly as Python Celery 5.x shapes it; `origin` is the
    /// sender's node name (Celery's `origin` header).
    pub fn to_envelope(&self, origin: &str) -> Envelope {
        let body = self.body.to_json();
        // Python's reprs, as Flower and `celery events` show them.
        let args_repr = super::pyrepr::args_repr(&self.body.args);
        let kwargs_repr = super::pyrepr::kwargs_repr(&self.body.kwargs);
        let mut prop_extra = Map::new();
        if let Some(expires) = self.expires {
            let ms = (expires - OffsetDateTime::now_utc())
                .whole_milliseconds()
                .max(0);
            prop_extra.insert("expiration".into(), Value::String(ms.to_string()));
        }
        Envelope {
            body: super::b64::encode(body.as_bytes()),
            content_encoding: Some("utf-8".into()),
            content_type: Some(CONTENT_TYPE_JSON.into()),
            headers: Headers {
                // Informational; Python workers run messages with any value (captured test A01).
                lang: Some("rust".into()),
                task: self.task.clone(),
                id: self.id.clone(),
                shadow: None,
                eta: self.eta.map(clock::to_celery_iso),
                expires: self.expires.map(clock::to_celery_iso),
                group: self.group.clone(),
                group_index: self.group_index,
                retries: self.retries,
                timelimit: [self.time_limit, None],
                root_id: Some(self.root_id.clone().unwrap_or_else(|| self.id.clone())),
                parent_id: self.parent_id.clone(),
                argsrepr: Some(args_repr),
                kwargsrepr: Some(kwargs_repr),
                origin: Some(origin.to_owned()),
                ignore_result: self.ignore_result,
                replaced_task_nesting: 0,
                stamped_headers: None,
                stamps: empty_object(),
                extra: self
                    .headers
                    .iter()
                    .filter(|(k, _)| !CELERY_HEADERS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            },
            properties: Properties {
                correlation_id: Some(self.id.clone()),
                reply_to: Some(String::new()),
                delivery_mode: Some(2),
                delivery_info: Some(DeliveryInfo {
                    exchange: String::new(),
                    routing_key: self.queue.clone(),
                    extra: Map::new(),
                }),
                priority: Some(self.priority.clamp(0, 9)),
                body_encoding: Some("base64".into()),
                delivery_tag: Some(Uuid::new_v4().to_string()),
                extra: prop_extra,
            },
        }
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
        Message::decode(msg.to_envelope(ORIGIN).to_json().as_bytes()).expect("decodes")
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
        let json = msg.to_envelope(ORIGIN).to_json();
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
    fn two_element_body_is_refused() {
        let mut env = TaskMessage::new("t", "celery", Map::new()).to_envelope(ORIGIN);
        env.body = B64.encode(b"[[], {}]");
        assert!(matches!(env.decode_body(), Err(DecodeError::BodyShape)));
    }

    #[test]
    fn other_content_types_are_refused() {
        let mut env = TaskMessage::new("t", "celery", Map::new()).to_envelope(ORIGIN);
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
        let mut env = TaskMessage::new("t", "celery", Map::new()).to_envelope(ORIGIN);
        env.properties.body_encoding = None;
        env.body = r#"[[1], {"a": 2}, {}]"#.into();
        let body = env.decode_body().unwrap();
        assert_eq!(body.args, vec![json!(1)]);
        assert_eq!(body.kwargs.get("a"), Some(&json!(2)));
    }

    #[test]
    fn unknown_compression_is_refused() {
        let mut env = TaskMessage::new("t", "celery", Map::new()).to_envelope(ORIGIN);
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
        let mut env = TaskMessage::new("t", "celery", Map::new()).to_envelope(ORIGIN);
        env.mark_redelivered();
        let v: Value = serde_json::from_str(&env.to_json()).unwrap();
        assert_eq!(v["headers"]["redelivered"], json!(true));
        assert_eq!(v["properties"]["delivery_info"]["redelivered"], json!(true));
    }
}
