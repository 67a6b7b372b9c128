//! What decoding one message may allocate, whatever it holds: the worst entries within the
//! default limits (1 MiB, 65,536 JSON values per part) and the bombs over them, decoded under an
//! allocator that records the peak of bytes in use. The bound asserted here is the one
//! docs/reliability.md states (per message, so per worker slot).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use celery_redis::protocol::{Message, TaskMessage, MAX_MESSAGE_BYTES};
use serde_json::{json, Map, Value};

struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = IN_USE.fetch_add(by, Ordering::SeqCst) + by;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        // Counted as the allocator does it at worst: both blocks at once, then the old freed.
        grew(new);
        let p = unsafe { System.realloc(ptr, layout, new) };
        IN_USE.fetch_sub(layout.size(), Ordering::SeqCst);
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Most bytes decoding one message may have in use at once, as a multiple of the byte limit.
const BOUND: usize = 8 * MAX_MESSAGE_BYTES;

/// Peak bytes allocated while decoding `raw` (beyond what was in use before), and the outcome.
fn peak_of(raw: &str) -> (usize, Result<(), String>) {
    let base = IN_USE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let outcome = Message::decode(raw.as_bytes())
        .map(drop)
        .map_err(|e| e.to_string());
    (PEAK.load(Ordering::SeqCst) - base, outcome)
}

fn envelope(edit: impl FnOnce(&mut Value)) -> String {
    let msg = TaskMessage::new("process_order", "celery", Map::new());
    let mut v: Value = serde_json::from_str(&msg.to_json("t@h")).unwrap();
    edit(&mut v);
    v.to_string()
}

fn plain(body: Value) -> String {
    let text = body.to_string();
    envelope(|v| {
        v["body"] = json!(text);
        v["properties"]["body_encoding"] = Value::Null;
    })
}

fn zlib(body: &[u8]) -> String {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(body).unwrap();
    let compressed = z.finish().unwrap();
    envelope(|v| {
        v["body"] = json!(B64.encode(compressed));
        v["headers"]["compression"] = json!("application/x-gzip");
    })
}

fn zeros(n: usize) -> Value {
    Value::Array(vec![json!(0); n])
}

fn entries(n: usize) -> Value {
    Value::Object((0..n).map(|i| (format!("{i:x}"), json!(0))).collect())
}

#[test]
fn decoding_one_message_allocates_at_most_8_times_the_byte_limit() {
    let values = 65_536 - 256;
    let string = "x".repeat(MAX_MESSAGE_BYTES - 4096);
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        (
            "array of 65,280 numbers",
            plain(json!([[], {"a": zeros(values)}, {}])),
            None,
        ),
        (
            "object of 32,640 entries",
            plain(json!([[], {"a": entries(values / 2)}, {}])),
            None,
        ),
        (
            "header object of 32,640 entries",
            envelope(|v| v["headers"]["x"] = entries(values / 2)),
            None,
        ),
        (
            "header array of 65,280 numbers",
            envelope(|v| v["headers"]["x"] = zeros(values)),
            None,
        ),
        (
            "array of 65,280 strings",
            plain(json!([[], {"a": vec!["ab"; values]}, {}])),
            None,
        ),
        (
            "1 MiB string in a plain body",
            plain(json!([[string], {}, {}])),
            None,
        ),
        (
            "1 MiB string inflated",
            zlib(json!([[string], {}, {}]).to_string().as_bytes()),
            None,
        ),
        (
            "65,280 numbers inflated",
            zlib(json!([[], {"a": zeros(values)}, {}]).to_string().as_bytes()),
            None,
        ),
        (
            "both parts at their value limit",
            envelope(|v| {
                v["headers"]["x"] = entries(values / 2);
                v["body"] = json!(json!([[], {"a": zeros(values)}, {}]).to_string());
                v["properties"]["body_encoding"] = Value::Null;
            }),
            None,
        ),
        (
            "zlib bomb (16 MB of 0,)",
            zlib(&b"0,".repeat(8 << 20)),
            Some("decompressed body is larger than 1048576 bytes"),
        ),
        (
            "a megabyte of 0, in a plain body",
            plain(json!([[], {"a": zeros(500_000)}, {}])),
            Some("body holds more than 65536 JSON values"),
        ),
        (
            "a megabyte of 0, in a header",
            envelope(|v| v["headers"]["x"] = zeros(500_000)),
            Some("message holds more than 65536 JSON values"),
        ),
        (
            "60 MB entry",
            plain(json!([[string.repeat(60)], {}, {}])),
            Some("message is larger than 1048576 bytes"),
        ),
    ];
    let mut worst = 0;
    for (name, raw, refused) in cases {
        let (peak, outcome) = peak_of(&raw);
        eprintln!(
            "{name}: {} bytes on the queue, peak {:.1} MiB decoding ({})",
            raw.len(),
            peak as f64 / 1048576.0,
            outcome.as_ref().err().map_or("decoded", String::as_str)
        );
        assert_eq!(outcome.err().as_deref(), refused, "{name}");
        assert!(peak <= BOUND, "{name}: {peak} bytes");
        worst = worst.max(peak);
    }
    eprintln!("worst: {:.1} MiB", worst as f64 / 1048576.0);
}
