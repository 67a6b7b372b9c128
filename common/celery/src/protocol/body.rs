//! The body of a task message, `[args, kwargs, embed]`, and the canvas signatures (callbacks,
//! errbacks, chain steps) that travel in `embed`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::DecodeError;
use super::json;

mod read;

/// Most callbacks, errbacks or chain steps one message may carry.
pub const MAX_CANVAS: usize = 1000;

/// The decoded body: positional args, keyword args and the canvas `embed`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Body {
    /// The task's positional arguments.
    pub args: Vec<Value>,
    /// The task's keyword arguments.
    pub kwargs: Map<String, Value>,
    /// What runs after it (`null` on the wire decodes as empty).
    pub embed: Embed,
}

/// Callbacks, errbacks and the rest of a chain travelling with a task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Embed {
    /// Sent on with the task's result when it succeeds (`link`).
    #[serde(default)]
    pub callbacks: Option<Vec<Signature>>,
    /// Sent when it fails (`link_error`).
    #[serde(default)]
    pub errbacks: Option<Vec<Signature>>,
    /// The remaining chain steps, **reversed**: the next step is the last element.
    #[serde(default)]
    pub chain: Option<Vec<Signature>>,
    /// The body of the chord whose header this task is in, as sent: the member that completes
    /// the chord publishes it (the worker's `delivery::chord`).
    #[serde(default)]
    pub chord: Option<Value>,
}

/// A Celery signature (`task.s(...)`) as it travels inside `embed`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Signature {
    /// The task's name.
    pub task: String,
    /// Its positional arguments (a callback gets the parent's result in front of them).
    #[serde(default)]
    pub args: Vec<Value>,
    /// Its keyword arguments.
    #[serde(default)]
    pub kwargs: Map<String, Value>,
    /// Its execution options (`queue`, `priority`, `countdown`, `task_id`, ...).
    #[serde(default)]
    pub options: Map<String, Value>,
    /// `chain`, `group`, `chord` for a canvas primitive; `None` for a plain task.
    #[serde(default)]
    pub subtask_type: Option<String>,
    /// Whether it takes no parent result (`task.si(...)`).
    #[serde(default)]
    pub immutable: bool,
    /// Any other field, kept so the signature is sent on as it came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Body {
    /// Decodes `[args, kwargs, embed]`, refusing more than [`MAX_CANVAS`] signatures in any
    /// list of `embed`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        let read::Parts(parts) = super::from_json_bytes(bytes).map_err(DecodeError::BodyJson)?;
        let Some((args, kwargs, read::EmbedPart(embed))) = parts else {
            return Err(DecodeError::BodyShape);
        };
        let embed = embed.map_err(DecodeError::BodyJson)?;
        // One message must not fan out into an unbounded number of messages (each a full
        // envelope in the worker's memory and on the queue, past any backpressure).
        for (what, list) in [
            ("callbacks", &embed.callbacks),
            ("errbacks", &embed.errbacks),
            ("chain", &embed.chain),
        ] {
            if list.as_ref().is_some_and(|l| l.len() > MAX_CANVAS) {
                return Err(DecodeError::TooMany(what, MAX_CANVAS));
            }
        }
        Ok(Body {
            args,
            kwargs,
            embed,
        })
    }

    /// `[args, kwargs, embed]` as serde writes the tuple (written by hand: `json.rs`; an
    /// embed with signatures in it goes through serde).
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push('[');
        json::array(&mut out, &self.args);
        out.push(',');
        json::object(&mut out, &self.kwargs);
        out.push(',');
        if self.embed == Embed::default() {
            out.push_str(r#"{"callbacks":null,"errbacks":null,"chain":null,"chord":null}"#);
        } else {
            json::serde(&mut out, &self.embed);
        }
        out.push(']');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: the body read into a JSON tree first, then taken apart (what
    /// [`Body::from_json`] did before it read the parts in one pass, less its [`MAX_CANVAS`]
    /// check, which the bodies below stay under).
    fn via_tree(bytes: &[u8]) -> Result<Body, DecodeError> {
        let value: Value = super::super::from_json_bytes(bytes).map_err(DecodeError::BodyJson)?;
        let Value::Array(mut parts) = value else {
            return Err(DecodeError::BodyShape);
        };
        if parts.len() != 3 {
            return Err(DecodeError::BodyShape);
        }
        let embed = parts.pop().unwrap_or(Value::Null);
        let kwargs = parts.pop().unwrap_or(Value::Null);
        let args = parts.pop().unwrap_or(Value::Null);
        let (Value::Array(args), Value::Object(kwargs)) = (args, kwargs) else {
            return Err(DecodeError::BodyShape);
        };
        let embed: Embed = match embed {
            Value::Null => Embed::default(),
            other => serde_json::from_value(other).map_err(DecodeError::BodyJson)?,
        };
        Ok(Body {
            args,
            kwargs,
            embed,
        })
    }

    fn verdict(r: Result<Body, DecodeError>) -> Result<Body, String> {
        r.map_err(|e| format!("{e:?}"))
    }

    /// Bodies of every shape, hostile ones too; each also cut short at every byte and with
    /// bytes changed at random.
    #[test]
    fn reading_the_parts_in_one_pass_gives_the_trees_verdicts() {
        let sig = r#"{"task": "t", "args": [1], "kwargs": {"k": "v"}, "options": {"queue": "q"},
            "subtask_type": null, "immutable": false, "chord_size": 2}"#;
        let bodies = [
            r#"[[], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]"#
                .to_owned(),
            r#"[[1, "a", null], {"x": {"y": [1.5, -2, 1e300]}}, null]"#.to_owned(),
            r#"[[], {}, {}]"#.to_owned(),
            format!(
                r#"[[], {{}}, {{"callbacks": [{sig}], "errbacks": null, "chain": [{sig}, {sig}], "chord": {{"a": 1}}}}]"#
            ),
            format!(
                r#"[[], {{}}, {{"chain": null, "chain": [{sig}], "other": [1, {{"z": null}}]}}]"#
            ),
            format!(r#"[[], {{}}, {{"chain": [{sig}], "chain": null}}]"#),
            r#"[[], {}, {"callbacks": null, "x": 5, "ch\u0061in": null}]"#.to_owned(),
            r#"[[], {}, {"callbacks": 5}]"#.to_owned(),
            r#"[[], {}, {"chain": [{"task": "a", "task": "b"}]}]"#.to_owned(),
            r#"[[], {}, {"chain": [{"args": []}]}]"#.to_owned(),
            r#"[[], {}, [null, null, null, null]]"#.to_owned(),
            r#"[[], {}, []]"#.to_owned(),
            r#"[[], {}, "embed"]"#.to_owned(),
            r#"[[], {}, 7]"#.to_owned(),
            r#"[[], {}, -7.5]"#.to_owned(),
            r#"[[], {}, true]"#.to_owned(),
            r#"[[], {}]"#.to_owned(),
            r#"[[], {}, null, null]"#.to_owned(),
            r#"[[], {}, null, "\ud800"]"#.to_owned(),
            r#"[{}, [], null]"#.to_owned(),
            r#"[null, {}, {"callbacks": 5}]"#.to_owned(),
            r#"[]"#.to_owned(),
            r#"{"args": [], "kwargs": {}}"#.to_owned(),
            r#"{"a": "\ud800"}"#.to_owned(),
            r#""[[], {}, null]""#.to_owned(),
            "5".to_owned(),
            "null".to_owned(),
            "true".to_owned(),
            "1e400".to_owned(),
            r#"[[1e400], {}, null]"#.to_owned(),
            r#"[[], {"x": "\ud800"}, null]"#.to_owned(),
            r#"[[], {}, {"x": "\udc00"}]"#.to_owned(),
            r#"[[], {}, {"x": 1e400}]"#.to_owned(),
            format!("[[], {{}}, {}{}]", "[".repeat(200), "]".repeat(200)),
            format!("[{}{}, {{}}, null]", "[".repeat(126), "]".repeat(126)),
            format!("[{}{}, {{}}, null]", "[".repeat(127), "]".repeat(127)),
            r#"  [ [ ] , { } , null ]  "#.to_owned(),
            r#"[[], {}, null] x"#.to_owned(),
        ];
        let mut rng = fastrand::Rng::with_seed(24);
        let specials = b"[]{}\",:\\u0 1n-.e\xff";
        let mut cases = 0;
        for body in &bodies {
            let mut texts = vec![body.as_bytes().to_vec()];
            for cut in 0..body.len() {
                texts.push(body.as_bytes()[..cut].to_vec());
            }
            for _ in 0..300 {
                let mut t = body.as_bytes().to_vec();
                for _ in 0..rng.usize(1..4) {
                    let at = rng.usize(0..=t.len());
                    let b = specials[rng.usize(0..specials.len())];
                    match rng.u8(0..3) {
                        0 if at < t.len() => t[at] = b,
                        1 if at < t.len() => {
                            t.remove(at);
                        }
                        _ => t.insert(at, b),
                    }
                }
                texts.push(t);
            }
            for t in texts {
                cases += 1;
                assert_eq!(
                    verdict(Body::from_json(&t)),
                    verdict(via_tree(&t)),
                    "{}",
                    String::from_utf8_lossy(&t)
                );
            }
        }
        assert!(cases > 10_000, "{cases}");
    }

    /// Python's rules, which the map gives: a repeated field keeps its last value (as
    /// `json.loads` does), and every part of the text is checked, unknown fields too. (A
    /// decoder straight into `Embed` refused the first and skipped the second unchecked.)
    #[test]
    fn a_repeated_embed_field_keeps_its_last_value_and_unknown_fields_are_still_checked() {
        let body = br#"[[], {}, {"chain": null, "chain": [{"task": "a", "task": "b"}]}]"#;
        let chain = Body::from_json(body).unwrap().embed.chain.unwrap();
        assert_eq!(chain[0].task, "b");
        for bad in [
            br#"[[], {}, {"x": "\ud800"}]"#.as_slice(),
            br#"[[], {}, {"x": 1e400}]"#.as_slice(),
            b"[[], {}, {\"x\": \"\xff\"}]".as_slice(),
        ] {
            assert!(
                matches!(Body::from_json(bad), Err(DecodeError::BodyJson(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
