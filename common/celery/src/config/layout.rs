//! The variables of kombu's Redis transport options: the key layout every process reads
//! (`BROKER_PRIORITY_STEPS`, `BROKER_KEY_SEP`, `BROKER_KEY_PREFIX`: kombu's `priority_steps`,
//! `sep`, `global_keyprefix`) and the worker's consume order (`BROKER_QUEUE_ORDER`: kombu's
//! `queue_order_strategy`).

use crate::keys::{self, Layout, LayoutError, QueueOrder};
use envconf::{raw, ConfigError, Source};

/// The variables of the key layout (every process reads them).
pub const LAYOUT_VARIABLES: &[&str] = &[
    "BROKER_PRIORITY_STEPS",
    "BROKER_KEY_SEP",
    "BROKER_KEY_PREFIX",
];
/// The variable [`queue_order`] reads (the worker).
pub const QUEUE_ORDER_VARIABLE: &str = "BROKER_QUEUE_ORDER";

/// The key layout: kombu's defaults for whatever is unset.
pub(super) fn layout(src: &dyn Source) -> Result<Layout, ConfigError> {
    let steps = match raw(src, "BROKER_PRIORITY_STEPS")? {
        None => keys::PRIORITY_STEPS.to_vec(),
        Some(list) => steps(&list).ok_or_else(|| ConfigError {
            var: "BROKER_PRIORITY_STEPS",
            reason: LayoutError::Steps.to_string(),
        })?,
    };
    let sep = match raw(src, "BROKER_KEY_SEP")? {
        None => keys::SEP.to_owned(),
        Some(text) => unescape(&text).ok_or_else(|| ConfigError {
            var: "BROKER_KEY_SEP",
            reason: "is not text with \\xNN escapes (write kombu's default as \\x06\\x16)".into(),
        })?,
    };
    let prefix = raw(src, "BROKER_KEY_PREFIX")?.unwrap_or_default();
    Layout::new(&steps, &sep, &prefix).map_err(|e| ConfigError {
        var: match e {
            LayoutError::Steps => "BROKER_PRIORITY_STEPS",
            LayoutError::Sep => "BROKER_KEY_SEP",
            LayoutError::Prefix => "BROKER_KEY_PREFIX",
        },
        reason: e.to_string(),
    })
}

/// `BROKER_QUEUE_ORDER`: `round_robin` (the default), `priority` or `sorted`.
pub fn queue_order(src: &dyn Source) -> Result<QueueOrder, ConfigError> {
    match raw(src, QUEUE_ORDER_VARIABLE)? {
        None => Ok(QueueOrder::default()),
        Some(name) => QueueOrder::parse(name.trim()).ok_or_else(|| ConfigError {
            var: QUEUE_ORDER_VARIABLE,
            reason: format!("{name:?} is not round_robin, priority or sorted"),
        }),
    }
}

/// `0,3,6,9` (spaces allowed, at most 10 numbers); the order and range are the layout's to check.
fn steps(list: &str) -> Option<Vec<u8>> {
    let parts: Vec<&str> = list.split(',').map(str::trim).collect();
    if parts.len() > 10 {
        return None;
    }
    parts.iter().map(|p| p.parse::<u8>().ok()).collect()
}

/// The text with `\xNN` (two hex digits) and `\\` escapes resolved; `None` for another escape.
fn unescape(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '\\' => out.push('\\'),
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                let byte = u8::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 2)?;
                out.push(char::from(byte));
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::vars as src;

    #[test]
    fn every_variable_is_documented() {
        testkit::docs::assert_documented(
            LAYOUT_VARIABLES,
            &[
                "worker/.env.example",
                "service-order/.env.example",
                "service-notification/.env.example",
            ],
        );
        testkit::docs::assert_documented(&[QUEUE_ORDER_VARIABLE], &["worker/.env.example"]);
        let mut read = LAYOUT_VARIABLES.to_vec();
        read.push(QUEUE_ORDER_VARIABLE);
        testkit::docs::assert_reads_only(include_str!("layout.rs"), &read);
    }

    #[test]
    fn unset_is_kombus_default() {
        assert_eq!(layout(&src(&[])).unwrap(), Layout::default());
        assert_eq!(queue_order(&src(&[])).unwrap(), QueueOrder::RoundRobin);
    }

    /// Celery's documented Redis priority setup, as variables.
    #[test]
    fn celerys_priority_setup_reads() {
        let l = layout(&src(&[
            ("BROKER_PRIORITY_STEPS", "0, 1,2,3,4,5,6,7,8,9"),
            ("BROKER_KEY_SEP", ":"),
            ("BROKER_KEY_PREFIX", "app:"),
        ]))
        .unwrap();
        assert_eq!(l.queue_list("celery", 5), "app:celery:5");
        let escaped = layout(&src(&[("BROKER_KEY_SEP", "\\x06\\x16")])).unwrap();
        assert_eq!(escaped, Layout::default());
        let order = queue_order(&src(&[("BROKER_QUEUE_ORDER", "priority")])).unwrap();
        assert_eq!(order, QueueOrder::Priority);
    }

    #[test]
    fn hostile_values_name_their_variable() {
        for (var, value) in [
            ("BROKER_PRIORITY_STEPS", "3,6,9"),
            ("BROKER_PRIORITY_STEPS", "0,3,3"),
            ("BROKER_PRIORITY_STEPS", "0,10"),
            ("BROKER_PRIORITY_STEPS", "0,-1"),
            ("BROKER_PRIORITY_STEPS", "0,,3"),
            ("BROKER_PRIORITY_STEPS", "0,1,2,3,4,5,6,7,8,9,9"),
            ("BROKER_PRIORITY_STEPS", &"0,".repeat(100_000)),
            ("BROKER_KEY_SEP", "x"),
            ("BROKER_KEY_SEP", "\\x0"),
            ("BROKER_KEY_SEP", "\\x00"),
            ("BROKER_KEY_SEP", "\\q"),
            ("BROKER_KEY_SEP", "::::::"),
            ("BROKER_KEY_PREFIX", "a b"),
            ("BROKER_KEY_PREFIX", "a*"),
            ("BROKER_KEY_PREFIX", &"p".repeat(65)),
            ("BROKER_QUEUE_ORDER", "fair"),
            ("BROKER_QUEUE_ORDER", " "),
        ] {
            let err = if var == QUEUE_ORDER_VARIABLE {
                queue_order(&src(&[(var, value)])).unwrap_err()
            } else {
                layout(&src(&[(var, value)])).unwrap_err()
            };
            assert_eq!(err.var, var, "{value:?}");
            assert!(err.to_string().len() < 300, "{err}");
        }
    }
}
