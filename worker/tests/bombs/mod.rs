//! Hostile task messages of the second hardening review, as raw list entries: small entries
//! that decode into a lot (a zlib bomb, a megabyte of `0,`), and entries far over the size limit.

#![allow(dead_code)] // each test file uses its own subset

use std::io::Write;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use celery_redis::protocol::TaskMessage;
use serde_json::{json, Map, Value};

/// `[[], {"items": [0,0,...]}, {}]` with `bytes` of `0,` in the array.
fn zeros_body(bytes: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(bytes + 64);
    body.extend_from_slice(br#"[[], {"items": ["#);
    while body.len() < bytes {
        body.extend_from_slice(b"0,");
    }
    body.extend_from_slice(br#"0]}, {}]"#);
    body
}

/// A `process_order` envelope with id `id` whose body is `edit`ed in.
fn envelope(id: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut msg = TaskMessage::new("process_order", "celery", Map::new());
    msg.id = id.to_owned();
    let mut v: Value = serde_json::from_str(&msg.to_json("attacker@host")).unwrap();
    edit(&mut v);
    v.to_string()
}

/// The review's zlib bomb: ~21 KB on the queue, 16.0 MB of `0,` under one kwarg once inflated
/// (just under the old 16 MiB bound on inflated bodies).
pub fn zlib_bomb(id: &str) -> String {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&zeros_body(16_000_000)).unwrap();
    let compressed = z.finish().unwrap();
    envelope(id, |v| {
        v["body"] = json!(B64.encode(&compressed));
        v["headers"]["compression"] = json!("application/x-gzip");
    })
}

/// A plain (not base64) body of `bytes` of `0,`: within the size limit when `bytes` is, but
/// half a million JSON values in a megabyte.
pub fn plain_zeros(id: &str, bytes: usize) -> String {
    let body = String::from_utf8(zeros_body(bytes)).unwrap();
    envelope(id, |v| {
        v["body"] = json!(body);
        v["properties"]
            .as_object_mut()
            .unwrap()
            .remove("body_encoding");
    })
}

/// The costliest message the default limits accept: a header object of 32,640 entries and a
/// body of 65,280 values (each part just within its 65,536 values). It decodes; `process_order`
/// then refuses its items.
pub fn largest_accepted(id: &str) -> String {
    let entries: Map<String, Value> = (0..32_640).map(|i| (format!("{i:x}"), json!(0))).collect();
    let body = json!([[], {"order_id": id, "items": vec![0; 65_270]}, {}]).to_string();
    envelope(id, |v| {
        v["headers"]["x"] = Value::Object(entries);
        v["body"] = json!(body);
        v["properties"]
            .as_object_mut()
            .unwrap()
            .remove("body_encoding");
    })
}
