//! A call's `args` and `kwargs` bound to a task's parameter names as Python binds
//! `f(*args, **kwargs)`, then decoded with serde straight from the decoded body (no copy):
//! a call that does not fit is Python's `TypeError`, a value of the wrong shape a `ValueError`.

use std::cell::Cell;

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
    let positional = params.get(..args.len()).unwrap_or(params);
    // Python checks each keyword argument in turn, then the number of positional ones.
    for k in kwargs.keys() {
        if positional.contains(&k.as_str()) {
            return Err(type_error(format!(
                "got multiple values for argument '{k}'"
            )));
        }
        if !params.contains(&k.as_str()) {
            return Err(type_error(format!(
                "got an unexpected keyword argument '{}'",
                pyrepr::cut(k)
            )));
        }
    }
    if args.len() > params.len() {
        let (s, was) = match args.len() {
            1 => ("s", "was"),
            _ => (if params.len() == 1 { "" } else { "s" }, "were"),
        };
        return Err(type_error(format!(
            "takes {} positional argument{s} but {} {was} given",
            params.len(),
            args.len()
        )));
    }
    let bound = params
        .iter()
        .copied()
        .zip(args)
        .chain(kwargs.iter().map(|(k, v)| (k.as_str(), v)));
    // Whether every argument was read: a field found missing before then is missing inside a
    // value (that value's shape, a ValueError), not a parameter nothing was bound to.
    let all_read = Cell::new(false);
    let bound = bound.chain(std::iter::from_fn(|| {
        all_read.set(true);
        None
    }));
    A::deserialize(MapDeserializer::<_, serde_json::Error>::new(bound)).map_err(|e| {
        let text = e.to_string();
        let missing = text
            .strip_prefix("missing field `")
            .map(|rest| rest.trim_end_matches('`'))
            .filter(|f| all_read.get() && params.contains(f) && !positional.contains(f));
        let unbound = params
            .len()
            .saturating_sub(positional.len())
            .saturating_sub(kwargs.len());
        match missing {
            // Python's words when it is the only one unbound, so surely the only one missing;
            // with several, others may be missing too (serde names only the first).
            Some(f) if unbound == 1 => {
                type_error(format!("missing 1 required positional argument: '{f}'"))
            }
            Some(f) => type_error(format!("missing required argument: '{f}'")),
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
                "TypeError: add() missing 1 required positional argument: 'y'",
            ),
            (
                json!([]),
                json!({"y": 1}),
                "TypeError: add() missing 1 required positional argument: 'x'",
            ),
            // Python's order: each keyword argument first, then the positional count.
            (
                json!([1, 2, 3]),
                json!({"z": 0}),
                "TypeError: add() got an unexpected keyword argument 'z'",
            ),
            (
                json!([1, 2, 3]),
                json!({"y": 0}),
                "TypeError: add() got multiple values for argument 'y'",
            ),
        ];
        for (args, kwargs, said) in cases {
            assert_eq!(call(args, kwargs), Err(said.to_owned()));
        }
        // Two unbound, serde names the first only: no count claimed.
        assert_eq!(
            call(json!([]), json!({})),
            Err("TypeError: add() missing required argument: 'x'".to_owned())
        );
        let bad = call(json!(["one", 2]), json!({})).unwrap_err();
        assert!(bad.starts_with("ValueError: add(): invalid type"), "{bad}");
        // A hostile value is shown cut, and a URL's path (a secret, often) not at all.
        let long = "x".repeat(100_000);
        let bad = call(json!([long, 2]), json!({})).unwrap_err();
        assert!(bad.len() < 1_100, "{} bytes", bad.len());
        let bad = call(json!(["https://hooks.example/T0/s3cr3t", 2]), json!({})).unwrap_err();
        assert!(!bad.contains("s3cr3t"), "{bad}");
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Point {
        x: i64,
    }

    fn arity(params: &[&str], n: usize) -> String {
        let args = vec![json!(0); n];
        let err = decode::<Map<String, Value>>("f", params, &args, &Map::new()).unwrap_err();
        err.to_string()
    }

    #[test]
    fn too_many_positional_arguments_are_counted_in_pythons_words() {
        assert_eq!(
            arity(&[], 1),
            "TypeError: f() takes 0 positional arguments but 1 was given"
        );
        assert_eq!(
            arity(&[], 2),
            "TypeError: f() takes 0 positional arguments but 2 were given"
        );
        assert_eq!(
            arity(&["a"], 2),
            "TypeError: f() takes 1 positional argument but 2 were given"
        );
    }

    #[test]
    fn a_field_missing_inside_a_value_is_its_shape_not_a_missing_argument() {
        #[derive(Debug, Deserialize)]
        struct Line {
            #[allow(dead_code)]
            a: Point,
        }
        // `a` is given, as an object without the field `x`: a ValueError, not
        // "missing argument 'x'" (nor 'a').
        let err = decode::<Line>("line", &["a"], &[json!({})], &Map::new()).unwrap_err();
        let err = err.to_string();
        assert!(
            err.starts_with("ValueError: line(): missing field `x`"),
            "{err}"
        );
        // Even when the inner field has a parameter's name.
        let err = decode::<Line>("line", &["a", "x"], &[json!({})], &Map::new()).unwrap_err();
        assert!(err.to_string().starts_with("ValueError"), "{err}");
    }
}
