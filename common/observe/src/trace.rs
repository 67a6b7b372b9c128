//! W3C trace context (`traceparent`, `tracestate`): parsing hostile values, starting a root,
//! continuing as a child (same trace id, new span id), and the context a task or a request runs
//! in ([`scope`], [`current`]), a tokio task-local.
//!
//! Only version `00` is accepted, exactly as the W3C recommendation spells it (lowercase hex,
//! trace id and parent id not all zeros); anything else is ignored and a new root trace starts.
//! `tracestate` is passed through when it is short and printable, dropped otherwise.

use std::cell::RefCell;
use std::future::Future;

/// The W3C header (and Celery message header) that carries the trace id, the parent span's id
/// and the flags.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header (and Celery message header) that carries vendors' opaque trace state, passed
/// on unchanged.
pub const TRACESTATE: &str = "tracestate";

/// Longest `tracestate` passed on (W3C: vendors must propagate at least 512 characters).
pub const MAX_TRACESTATE: usize = 512;

/// Flags of a trace this process starts: sampled, so a traced consumer records it.
const SAMPLED: u8 = 0x01;

/// One span's place in a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    flags: u8,
    state: Option<String>,
}

impl TraceContext {
    /// A new trace (random ids, sampled).
    pub fn root() -> Self {
        TraceContext {
            trace_id: nonzero(|| fastrand::u128(..)),
            span_id: nonzero(|| fastrand::u64(..)),
            flags: SAMPLED,
            state: None,
        }
    }

    /// The context carried by `traceparent` (and `tracestate`), or `None` when the parent is
    /// absent or not a valid version-00 value (its `tracestate` is then ignored too).
    pub fn parse(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<Self> {
        let (trace_id, span_id, flags) = parse_traceparent(traceparent?)?;
        Some(TraceContext {
            trace_id,
            span_id,
            flags,
            state: tracestate.and_then(valid_tracestate).map(str::to_owned),
        })
    }

    /// What a receiver runs in: a child of the carried context when valid, else a new root.
    pub fn continue_or_root(traceparent: Option<&str>, tracestate: Option<&str>) -> Self {
        Self::parse(traceparent, tracestate).map_or_else(Self::root, |parent| parent.child())
    }

    /// The same trace, a new span (its parent is `self`).
    pub fn child(&self) -> Self {
        TraceContext {
            span_id: nonzero(|| fastrand::u64(..)),
            ..self.clone()
        }
    }

    /// 32 lowercase hex digits (a log field of every task: written by [`put_hex`], not `format!`).
    pub fn trace_id(&self) -> String {
        hex(self.trace_id, 32)
    }

    /// 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        hex(u128::from(self.span_id), 16)
    }

    /// `00-<trace id>-<span id>-<flags>`, naming this span as the parent.
    pub fn traceparent(&self) -> String {
        // Written into a buffer nibble by nibble: `write!` with padded hex cost ~1,300
        // instructions a child message, a `push` per character most of the rest.
        let mut text = *b"00-00000000000000000000000000000000-0000000000000000-00";
        let fields = [
            (3..35, self.trace_id),
            (36..52, u128::from(self.span_id)),
            (53..55, u128::from(self.flags)),
        ];
        for (range, value) in fields {
            if let Some(digits) = text.get_mut(range) {
                put_hex(digits, value);
            }
        }
        // Hex digits only: always UTF-8 (`from_utf8` checks ASCII a word at a time, the lossy
        // form a byte at a time).
        std::str::from_utf8(&text).unwrap_or_default().to_owned()
    }

    /// The `tracestate` received with the parent, passed on as it came (`None` when absent,
    /// too long or not printable).
    pub fn tracestate(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// The headers that carry this context to a receiver: `traceparent`, and `tracestate`
    /// when there is one.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![(TRACEPARENT, self.traceparent())];
        if let Some(state) = &self.state {
            out.push((TRACESTATE, state.clone()));
        }
        out
    }
}

/// The last `width` (at most 32) hex digits of `n`, lowercase, zero-padded.
fn hex(n: u128, width: usize) -> String {
    let mut digits = [b'0'; 32];
    let start = 32usize.saturating_sub(width);
    let field = digits.get_mut(start..).unwrap_or_default();
    put_hex(field, n);
    std::str::from_utf8(field).unwrap_or_default().to_owned()
}

/// The last `digits.len()` hex digits of `n`, lowercase, zero-padded, into `digits`.
fn put_hex(digits: &mut [u8], n: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut rest = n;
    for digit in digits.iter_mut().rev() {
        let nibble = usize::try_from(rest & 0xf).unwrap_or(0);
        *digit = HEX.get(nibble).copied().unwrap_or(b'0');
        rest >>= 4;
    }
}

fn nonzero<T: PartialEq + Default>(mut draw: impl FnMut() -> T) -> T {
    loop {
        let v = draw();
        if v != T::default() {
            return v;
        }
    }
}

/// `00-<32 hex>-<16 hex>-<2 hex>`, lowercase, ids not all zeros.
fn parse_traceparent(value: &str) -> Option<(u128, u64, u8)> {
    let bytes = value.as_bytes();
    if bytes.len() != 55 || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let (version, trace, span, flags) =
        (&value[0..2], &value[3..35], &value[36..52], &value[53..55]);
    if version != "00" {
        return None;
    }
    let trace_id = u128::from_str_radix(lower_hex(trace)?, 16).ok()?;
    let span_id = u64::from_str_radix(lower_hex(span)?, 16).ok()?;
    let flags = u8::from_str_radix(lower_hex(flags)?, 16).ok()?;
    (trace_id != 0 && span_id != 0).then_some((trace_id, span_id, flags))
}

/// `s` when it is only `0-9a-f` (`from_str_radix` alone would take `+`, `A-F`).
fn lower_hex(s: &str) -> Option<&str> {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        .then_some(s)
}

/// `tracestate` passed on as is when it is non-empty, at most [`MAX_TRACESTATE`] bytes and
/// printable ASCII (its list syntax is the vendors' business).
fn valid_tracestate(value: &str) -> Option<&str> {
    let ok = !value.trim().is_empty()
        && value.len() <= MAX_TRACESTATE
        && value.bytes().all(|b| (0x20..0x7f).contains(&b));
    ok.then_some(value)
}

tokio::task_local! {
    static CURRENT: RefCell<Option<TraceContext>>;
}

/// Runs `future` with `context` as [`current`] (replaceable inside with [`set`]). Not an
/// `async fn`, for the reason [`crate::log::scope`] gives.
pub fn scope<F: Future>(
    context: Option<TraceContext>,
    future: F,
) -> impl Future<Output = F::Output> {
    CURRENT.scope(RefCell::new(context), future)
}

/// The context the running task or request is in; `None` outside any [`scope`].
pub fn current() -> Option<TraceContext> {
    CURRENT
        .try_with(|c| c.try_borrow().ok().and_then(|c| c.clone()))
        .ok()
        .flatten()
}

/// The current trace id, without copying the rest.
pub fn current_trace_id() -> Option<String> {
    CURRENT
        .try_with(|c| c.try_borrow().ok()?.as_ref().map(TraceContext::trace_id))
        .ok()
        .flatten()
}

/// Replaces the context of the enclosing [`scope`]; does nothing outside one.
pub fn set(context: TraceContext) {
    let _ = CURRENT.try_with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            *c = Some(context);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_parent_is_continued_with_a_new_span() {
        let p = TraceContext::parse(Some(VALID), Some("congo=t61rcWkgMzE")).unwrap();
        assert_eq!(p.traceparent(), VALID);
        assert_eq!(p.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.span_id(), "00f067aa0ba902b7");
        assert!(p.traceparent().ends_with("-01"));
        let c = TraceContext::continue_or_root(Some(VALID), Some("congo=t61rcWkgMzE"));
        assert_eq!(c.trace_id(), p.trace_id());
        assert_ne!(c.span_id(), p.span_id());
        assert_eq!(c.tracestate(), Some("congo=t61rcWkgMzE"));
        let h = c.headers();
        assert_eq!(h[0].0, "traceparent");
        assert!(h[0].1.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert_eq!(h[1], ("tracestate", "congo=t61rcWkgMzE".to_owned()));
    }

    #[test]
    fn unsampled_flags_are_kept() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let c = TraceContext::continue_or_root(Some(v), None);
        assert!(c.traceparent().ends_with("-00"));
    }

    #[test]
    fn invalid_parents_start_a_new_root() {
        let bad = [
            "",
            "00",
            "garbage",
            // upper case, version ff and 01, all-zero ids, wrong lengths and separators
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-+0f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-é",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902é-01",
        ];
        for v in bad {
            assert_eq!(TraceContext::parse(Some(v), Some("a=b")), None, "{v:?}");
            let c = TraceContext::continue_or_root(Some(v), Some("a=b"));
            assert_ne!(c.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736", "{v:?}");
            assert_eq!(c.tracestate(), None, "{v:?}");
            assert!(c.traceparent().ends_with("-01"), "{v:?}");
            assert!(TraceContext::parse(Some(&c.traceparent()), None).is_some());
        }
        assert_eq!(TraceContext::parse(None, Some("a=b")), None);
    }

    #[test]
    fn tracestate_is_bounded_and_printable() {
        let long = "a=".to_owned() + &"b".repeat(MAX_TRACESTATE);
        for state in [long.as_str(), "a=b\nc=d", "", "  ", "a=\u{7f}"] {
            let c = TraceContext::parse(Some(VALID), Some(state)).unwrap();
            assert_eq!(c.tracestate(), None, "{state:?}");
            assert_eq!(c.headers().len(), 1);
        }
        let max = "a=".to_owned() + &"b".repeat(MAX_TRACESTATE - 2);
        let c = TraceContext::parse(Some(VALID), Some(&max)).unwrap();
        assert_eq!(c.tracestate(), Some(max.as_str()));
    }

    #[test]
    fn roots_are_new_each_time() {
        let (a, b) = (TraceContext::root(), TraceContext::root());
        assert_ne!(a.trace_id(), b.trace_id());
        assert_eq!(a.traceparent().len(), 55);
        for c in [a, b, TraceContext::root()] {
            let expected = format!("00-{:032x}-{:016x}-{:02x}", c.trace_id, c.span_id, c.flags);
            assert_eq!(c.traceparent(), expected);
            assert_eq!(c.trace_id(), format!("{:032x}", c.trace_id));
            assert_eq!(c.span_id(), format!("{:016x}", c.span_id));
        }
        let small = TraceContext {
            trace_id: 0xab,
            span_id: 1,
            ..TraceContext::root()
        };
        assert_eq!(small.trace_id(), format!("{:032x}", 0xab));
        assert_eq!(small.span_id(), "0000000000000001");
    }

    #[tokio::test]
    async fn current_is_the_scopes_and_can_be_replaced() {
        assert_eq!(current(), None);
        let parent = TraceContext::parse(Some(VALID), None);
        scope(parent.clone(), async {
            assert_eq!(current(), parent);
            let next = TraceContext::root();
            set(next.clone());
            assert_eq!(current_trace_id(), Some(next.trace_id()));
        })
        .await;
        set(TraceContext::root());
        assert_eq!(current(), None);
    }
}
