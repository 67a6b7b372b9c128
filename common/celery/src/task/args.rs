//! A call's `args` and `kwargs` bound to a task's parameter names as Python binds
//! `f(*args, **kwargs)`, then decoded with serde straight from the decoded body (no copy):
//! a call that does not fit is Python's `TypeError`, a value of the wrong shape a `ValueError`.

use serde::de::value::MapDeserializer;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::TaskError;
use crate::protocol::pyrepr;

/// Decodes the arguments of a call of task `name` whose parameters are `params`.
pub fn decode<A: DeserializeOwned>(
    name: &str,
    params: &[&str],
    args: &[Value],
    kwargs: &Map<String, Value>,
) -> Result<A, TaskError> {
    let type_error = |what: String| TaskError::builtin("TypeError", format!("{name}() {what}"));
    if args.len() > params.len() {
        return Err(type_error(format!(
            "takes {} positional arguments but {} were given",
            params.len(),
            args.len()
        )));
    }
    if let Some(p) = params[..args.len()]
        .iter()
        .find(|p| kwargs.contains_key(**p))
    {
        return Err(type_error(format!(
            "got multiple values for argument '{p}'"
        )));
    }
    if let Some(k) = kwargs.keys().find(|k| !params.contains(&k.as_str())) {
        return Err(type_error(format!(
            "got an unexpected keyword argument '{}'",
            pyrepr::cut(k)
        )));
    }
    let bound = params
        .iter()
        .copied()
        .zip(args)
        .chain(kwargs.iter().map(|(k, v)| (k.as_str(), v)));
    A::deserialize(MapDeserializer::<_, serde_json::Error>::new(bound)).map_err(|e| {
        let text = e.to_string();
        match text.strip_prefix("missing field `") {
            Some(rest) => type_error(format!(
                "missing required argument: '{}'",
                rest.trim_end_matches('`')
            )),
            // serde quotes the offending value: shown cut, its URLs without their paths.
            None => {
                let shown = pyrepr::cut(&pyrepr::shown_text(&text));
                TaskError::builtin("ValueError", format!("{name}(): {shown}"))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Add {
        x: i64,
        y: i64,
    }

    fn call(args: Value, kwargs: Value) -> Result<Add, String> {
        let args = args.as_array().cloned().unwrap_or_default();
        let kwargs = kwargs.as_object().cloned().unwrap_or_default();
        decode::<Add>("add", &["x", "y"], &args, &kwargs).map_err(|e| e.to_string())
    }

    #[test]
    fn positional_then_keyword_arguments_bind_by_name() {
        assert_eq!(call(json!([1, 2]), json!({})), Ok(Add { x: 1, y: 2 }));
        assert_eq!(call(json!([1]), json!({"y": 5})), Ok(Add { x: 1, y: 5 }));
        assert_eq!(
            call(json!([]), json!({"y": 3, "x": 4})),
            Ok(Add { x: 4, y: 3 })
        );
    }

    #[test]
    fn calls_that_do_not_fit_are_type_errors_and_bad_values_value_errors() {
        let cases = [
            (
                json!([1, 2, 3]),
                json!({}),
                "TypeError: add() takes 2 positional arguments but 3 were given",
            ),
            (
                json!([1]),
                json!({"x": 2}),
                "TypeError: add() got multiple values for argument 'x'",
            ),
            (
                json!([1, 2]),
                json!({"z": 0}),
                "TypeError: add() got an unexpected keyword argument 'z'",
            ),
            (
                json!([1]),
                json!({}),
                "TypeError: add() missing required argument: 'y'",
            ),
        ];
        for (args, kwargs, said) in cases {
            assert_eq!(call(args, kwargs), Err(said.to_owned()));
        }
        let bad = call(json!(["one", 2]), json!({})).unwrap_err();
        assert!(bad.starts_with("ValueError: add(): invalid type"), "{bad}");
        // A hostile value is shown cut, and a URL's path (a secret, often) not at all.
        let long = "x".repeat(100_000);
        let bad = call(json!([long, 2]), json!({})).unwrap_err();
        assert!(bad.len() < 1_100, "{} bytes", bad.len());
        let bad = call(json!(["https://hooks.example/T0/s3cr3t", 2]), json!({})).unwrap_err();
        assert!(!bad.contains("s3cr3t"), "{bad}");
    }
}
