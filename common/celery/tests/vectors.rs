//! The wire format against real captures from Python Celery 5.7 and 5.4 (fixtures/celery-vectors).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use celery_redis::protocol::{Envelope, Limits, Message, TaskMessage};
use celery_redis::result::{ResultMeta, TaskState};
use serde_json::{Map, Value};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/celery-vectors")
}

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn json_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// Every raw list entry a Python producer wrote, with the file it came from.
fn captured_messages() -> Vec<(String, Value, String)> {
    let mut out = Vec::new();
    for dir in ["messages", "messages_celery54"] {
        for file in json_files(dir) {
            let doc = read(&file);
            let name = format!("{dir}/{}", file.file_name().unwrap().to_string_lossy());
            // Most files list the entries; the one-off zlib capture holds one entry at the top.
            let entries = match doc["list_entries_in_send_order"].as_array() {
                Some(list) => list.clone(),
                None => vec![doc.clone()],
            };
            for entry in entries {
                let raw = entry["raw"].as_str().unwrap().to_owned();
                out.push((name.clone(), entry, raw));
            }
        }
    }
    out
}

/// The smallest `MESSAGE_MAX_BYTES` still runs every message a Python producer sent.
#[test]
fn every_captured_producer_message_decodes_within_the_smallest_limits() {
    let smallest = Limits {
        max_bytes: 16 * 1024,
        ..Limits::default()
    };
    for (name, _, raw) in captured_messages() {
        let msg = Message::decode_within(raw.as_bytes(), &smallest)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // The worker's entry point, for text a claim read, decodes it the same.
        let as_text = Message::decode_text_within(&raw, &smallest);
        assert_eq!(as_text.ok(), Some(msg), "{name}");
    }
}

#[test]
fn every_captured_producer_message_decodes() {
    let messages = captured_messages();
    assert!(
        messages.len() >= 30,
        "expected every capture, found {}",
        messages.len()
    );
    for (name, entry, raw) in messages {
        let msg = Message::decode(raw.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let decoded = &entry["body_decoded"];
        assert_eq!(
            Value::Array(msg.body.args.clone()),
            decoded[0],
            "{name}: args"
        );
        assert_eq!(
            Value::Object(msg.body.kwargs.clone()),
            decoded[1],
            "{name}: kwargs"
        );
        assert_eq!(
            msg.id(),
            entry["envelope"]["headers"]["id"].as_str().unwrap(),
            "{name}"
        );
        // The list a message sits in is the one its priority selects.
        let list = celery_redis::keys::queue_list(
            msg.envelope.routing_key().unwrap(),
            msg.envelope.priority(),
        );
        assert_eq!(
            list,
            entry["list_key"].as_str().unwrap_or("celery"),
            "{name}: list"
        );
    }
}

#[test]
fn chain_and_link_signatures_decode_as_objects() {
    let chain = read(&fixtures().join("messages/msg_chain3_process_order_notify_notify.json"));
    let raw = chain["list_entries_in_send_order"][0]["raw"]
        .as_str()
        .unwrap();
    let msg = Message::decode(raw.as_bytes()).unwrap();
    let steps = msg.body.embed.chain.expect("chain");
    assert_eq!(steps.len(), 2);
    assert!(steps.iter().all(|s| s.task == "send_notification"));
    assert!(steps.iter().all(|s| s.options.contains_key("task_id")));

    let link = read(&fixtures().join("messages/msg_process_order_link.json"));
    let raw = link["list_entries_in_send_order"][0]["raw"]
        .as_str()
        .unwrap();
    let msg = Message::decode(raw.as_bytes()).unwrap();
    assert_eq!(
        msg.body.embed.callbacks.expect("callbacks")[0].task,
        "send_notification"
    );
}

#[test]
fn zlib_compressed_body_decodes() {
    let doc = read(&fixtures().join("messages/msg_process_order_zlib_compression.json"));
    let raw = doc["raw"].as_str().unwrap();
    let msg = Message::decode(raw.as_bytes()).unwrap();
    assert_eq!(
        msg.envelope.headers.extra["compression"],
        "application/x-gzip"
    );
    assert_eq!(Value::Object(msg.body.kwargs), doc["body_decoded"][1]);
}

#[test]
fn eta_and_expires_parse_and_time_limits_read_hard_then_soft() {
    let doc = read(&fixtures().join("messages/msg_send_notification_eta_expires.json"));
    let raw = doc["list_entries_in_send_order"][0]["raw"]
        .as_str()
        .unwrap();
    let msg = Message::decode(raw.as_bytes()).unwrap();
    assert!(msg.eta().is_some() && msg.expires().is_some());
    assert!(msg.expires().unwrap() > msg.eta().unwrap());

    let doc = read(&fixtures().join("messages/msg_process_order_time_limits.json"));
    let raw = doc["list_entries_in_send_order"][0]["raw"]
        .as_str()
        .unwrap();
    let msg = Message::decode(raw.as_bytes()).unwrap();
    assert_eq!(msg.envelope.headers.timelimit, [Some(60.0), Some(50.0)]);
    assert!(msg.envelope.headers.ignore_result);
}

/// The JSON type of every value, recursively, for objects (shape without values).
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Null => Value::String("null".into()),
        Value::Bool(_) => Value::String("bool".into()),
        Value::Number(_) => Value::String("number".into()),
        Value::String(_) => Value::String("string".into()),
        Value::Array(a) => Value::String(format!("array[{}]", a.len())),
    }
}

#[test]
fn produced_envelope_has_the_shape_of_python_captures() {
    let doc = read(&fixtures().join("messages/msg_process_order_kwargs.json"));
    let python: Value = doc["list_entries_in_send_order"][0]["envelope"].clone();
    let kwargs: Map<String, Value> = python_kwargs(&doc);
    let ours = TaskMessage::new("process_order", "celery", kwargs)
        .to_envelope("test@host")
        .unwrap();
    let ours: Value = serde_json::from_str(&ours.to_json()).unwrap();

    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&ours), keys(&python), "top-level keys");
    assert_eq!(
        keys(&ours["headers"]),
        keys(&python["headers"]),
        "all 19 headers, Python's order"
    );
    assert_eq!(keys(&python["headers"]).len(), 19);
    assert_eq!(
        keys(&ours["properties"]),
        keys(&python["properties"]),
        "all 7 properties"
    );
    // Same types everywhere, except headers Python leaves null that we also leave null.
    assert_eq!(shape(&ours["properties"]), shape(&python["properties"]));
    let (mut ours_h, mut py_h) = (shape(&ours["headers"]), shape(&python["headers"]));
    // `parent_id`, `shadow`... are null in both; argsrepr/kwargsrepr/origin are strings in both.
    for h in [&mut ours_h, &mut py_h] {
        h.as_object_mut().unwrap().remove("lang");
    }
    assert_eq!(ours_h, py_h);
    // The body is base64 of a 3-element [args, kwargs, embed] with the four embed keys.
    let body = Envelope::from_json(serde_json::to_string(&ours).unwrap().as_bytes())
        .unwrap()
        .decode_body()
        .unwrap();
    let embed = serde_json::to_value(&body.embed).unwrap();
    assert_eq!(
        embed,
        serde_json::json!({"callbacks": null, "errbacks": null, "chain": null, "chord": null})
    );
    assert_eq!(ours["headers"]["root_id"], ours["headers"]["id"]);
    assert_eq!(ours["properties"]["correlation_id"], ours["headers"]["id"]);
    assert_ne!(ours["properties"]["delivery_tag"], ours["headers"]["id"]);
}

fn python_kwargs(doc: &Value) -> Map<String, Value> {
    doc["list_entries_in_send_order"][0]["body_decoded"][1]
        .as_object()
        .unwrap()
        .clone()
}

#[test]
fn handmade_envelopes_are_judged_like_the_tolerance_experiments() {
    let doc = read(&fixtures().join("experiments_tolerance.json"));
    let mut verdicts = BTreeMap::new();
    for case in doc["part_a_python_worker_vs_handmade_messages"]
        .as_array()
        .unwrap()
    {
        let raw = serde_json::to_string(&case["envelope_sent"]).unwrap();
        let variant = case["variant"].as_str().unwrap()[..3].to_owned();
        let verdict = Message::decode(raw.as_bytes());
        // The worker's entry point, for text a claim read, is the same decoder.
        let as_text = Message::decode_text_within(&raw, &Limits::default());
        let runs = verdict.is_ok();
        assert_eq!(as_text.is_ok(), runs, "{variant}");
        assert_eq!(as_text.ok(), verdict.ok(), "{variant}");
        verdicts.insert(variant, runs);
    }
    // Runnable: everything Python ran; the missing delivery_tag/delivery_info cases are handled
    // by the queue (dead-lettered / routed to the queue), not by the decoder.
    for ok in [
        "A01", "A02", "A03", "A04", "A06", "A07", "A09", "A12", "A13", "A14",
    ] {
        assert!(verdicts[ok], "{ok} should decode");
    }
    // Poison: body not a string, two-element body, no content-type, content-type with charset.
    for bad in ["A05", "A08", "A10", "A11"] {
        assert!(!verdicts[bad], "{bad} should be refused");
    }
}

/// Every raw result value a Python worker wrote among the captures, with the file it came from.
fn captured_results() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for dir in [
        "worker",
        "worker_celery54",
        "worker_extended",
        "restore",
        "errback",
    ] {
        for file in json_files(dir) {
            let mut raws = Vec::new();
            collect_results(&read(&file), &mut raws);
            let name = file.display().to_string();
            out.extend(raws.into_iter().map(|raw| (name.clone(), raw)));
        }
    }
    out
}

#[test]
fn every_result_a_python_worker_wrote_decodes() {
    let mut seen = BTreeMap::<String, usize>::new();
    for (file, raw) in captured_results() {
        let meta: ResultMeta =
            serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{file}: {e}: {raw}"));
        assert!(!meta.task_id.is_empty());
        if meta.status == TaskState::Failure || meta.status == TaskState::Revoked {
            assert!(meta.exception().is_some(), "{file}: exception shape");
        }
        *seen.entry(meta.status.as_str().to_owned()).or_default() += 1;
    }
    for state in ["SUCCESS", "FAILURE", "RETRY", "REVOKED", "STARTED"] {
        assert!(
            seen.contains_key(state),
            "no {state} result among the captures: {seen:?}"
        );
    }
}

/// Raw result values anywhere in a capture document (`{"key": "celery-task-meta-...", "raw": ...}`
/// and the published payloads).
fn collect_results(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            let is_meta = m
                .get("key")
                .and_then(Value::as_str)
                .is_some_and(|k| k.starts_with("celery-task-meta-"))
                || m.get("channel")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.starts_with("celery-task-meta-"));
            if is_meta {
                for field in ["raw", "data_raw"] {
                    if let Some(raw) = m.get(field).and_then(Value::as_str) {
                        out.push(raw.to_owned());
                    }
                }
            }
            m.values().for_each(|v| collect_results(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_results(v, out)),
        _ => {}
    }
}

#[test]
fn our_result_values_have_the_fields_python_clients_need() {
    let doc = read(&fixtures().join("worker/result_success_process_order.json"));
    let python: Value = doc["result"]["decoded"].clone();
    let ours = ResultMeta::success("id-1", serde_json::json!({"x": 1}));
    let ours: Value = serde_json::to_value(&ours).unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&ours), keys(&python));
    assert!(celery_redis::clock::parse_celery_iso(ours["date_done"].as_str().unwrap()).is_some());
}

/// `result_extended`: what `ResultMeta::with_extended` stores is what a Python Celery 5.7
/// worker stored for the same task with `result_extended = True` (captured), date aside.
#[test]
fn extended_results_carry_what_celery_stores() {
    use celery_redis::result::{Extended, ResultMeta};
    let doc = read(&fixtures().join("worker_extended/result_success_process_order.json"));
    let stored = &doc["result"]["decoded"];
    let kwargs = stored["kwargs"].as_object().unwrap().clone();
    let meta = ResultMeta::success(
        stored["task_id"].as_str().unwrap(),
        stored["result"].clone(),
    )
    .with_extended(Extended {
        name: "process_order",
        args: &[],
        kwargs: &kwargs,
        worker: "capture@localhost",
        retries: 0,
        queue: Some("celery"),
    });
    let mut ours = serde_json::to_value(&meta).unwrap();
    let mut theirs = stored.clone();
    for v in [&mut ours, &mut theirs] {
        v.as_object_mut().unwrap().remove("date_done");
    }
    assert_eq!(ours, theirs);
}

/// `Envelope::to_json` writes a plain body as it is, around the rest serialized by serde: the
/// text must be serde's own, for every captured message and for bodies that need escaping.
#[test]
fn envelopes_are_written_exactly_as_serde_writes_them() {
    let (_, _, raw) = captured_messages().remove(0);
    for (name, _, raw) in captured_messages() {
        let envelope = Envelope::from_json(raw.as_bytes()).unwrap();
        let serde = serde_json::to_string(&envelope).unwrap();
        assert_eq!(envelope.to_json(), serde, "{name}");
    }
    for body in [
        "",
        "plain",
        "a \"quoted\" \\ body",
        "line\nbreak\u{1}",
        "ünï/+=",
    ] {
        let mut envelope = Envelope::from_json(raw.as_bytes()).unwrap();
        envelope.body = body.to_owned();
        let serde = serde_json::to_string(&envelope).unwrap();
        assert_eq!(envelope.to_json(), serde, "{body:?}");
        assert_eq!(Envelope::from_json(serde.as_bytes()).unwrap(), envelope);
    }
}

/// Strings that need every kind of JSON escape, and some that need none.
fn hostile_strings() -> Vec<String> {
    let mut out: Vec<String> = (0u32..0x80)
        .filter_map(char::from_u32)
        .filter(|c| !c.is_ascii_alphanumeric())
        .map(|c| format!("{}{c}z", "a".repeat(17)))
        .collect();
    out.extend(["", "ünï", "\u{2028}\u{2029}", "😀", "plain-id"].map(String::from));
    out
}

/// Every field an envelope writes by hand, set to each hostile string (and the numbers and
/// optional parts to their other shapes): still serde's text.
#[test]
fn envelopes_with_hostile_fields_are_written_as_serde_writes_them() {
    let (_, _, raw) = captured_messages().remove(0);
    let base = Envelope::from_json(raw.as_bytes()).unwrap();
    for s in hostile_strings() {
        let mut e = base.clone();
        let h = &mut e.headers;
        for field in [
            &mut h.lang,
            &mut h.shadow,
            &mut h.eta,
            &mut h.expires,
            &mut h.group,
            &mut h.root_id,
            &mut h.parent_id,
            &mut h.argsrepr,
            &mut h.kwargsrepr,
            &mut h.origin,
        ] {
            *field = Some(s.clone());
        }
        h.task = s.clone();
        h.id = s.clone();
        h.group_index = Some(-3);
        h.retries = i64::MAX;
        h.timelimit = [Some(1.5), Some(1e300)];
        h.stamped_headers = Some(serde_json::json!([s]));
        h.stamps = serde_json::json!({ s.as_str(): [s] });
        h.extra.insert(s.clone(), Value::String(s.clone()));
        let p = &mut e.properties;
        for field in [
            &mut p.correlation_id,
            &mut p.reply_to,
            &mut p.body_encoding,
            &mut p.delivery_tag,
        ] {
            *field = Some(s.clone());
        }
        p.extra.insert(format!("x{s}"), serde_json::json!({"n": 1}));
        if let Some(info) = p.delivery_info.as_mut() {
            info.exchange = s.clone();
            info.routing_key = s.clone();
            info.extra.insert(s.clone(), Value::Bool(true));
        }
        e.content_type = Some(s.clone());
        assert_eq!(e.to_json(), serde_json::to_string(&e).unwrap(), "{s:?}");
        e.properties.delivery_info = None;
        e.properties.priority = None;
        e.headers.timelimit = [None, Some(2.0)];
        e.headers.stamped_headers = None;
        assert_eq!(e.to_json(), serde_json::to_string(&e).unwrap(), "{s:?}");
    }
}

/// Bodies and results are written by hand too: serde's text for every capture and for hostile
/// values.
#[test]
fn bodies_and_results_are_written_as_serde_writes_them() {
    for (name, _, raw) in captured_messages() {
        let body = Message::decode(raw.as_bytes()).unwrap().body;
        let serde = serde_json::to_string(&(&body.args, &body.kwargs, &body.embed)).unwrap();
        assert_eq!(body.to_json(), serde, "{name}");
    }
    let mut metas: Vec<ResultMeta> = captured_results()
        .iter()
        .map(|(_, raw)| serde_json::from_str(raw).unwrap())
        .collect();
    assert!(metas.len() > 20, "{}", metas.len());
    for s in hostile_strings() {
        let value = serde_json::json!({ s.as_str(): [s, 1, -2.5, null, true, {}] });
        let mut meta = ResultMeta::success(&s, value.clone());
        meta.traceback = Some(s.clone());
        meta.group_id = Some(s.clone());
        meta.parent_id = Some(s.clone());
        meta.extra.insert(s.clone(), value.clone());
        metas.push(meta);
        let mut meta = ResultMeta::pending(&s);
        meta.status = TaskState::Other(s.clone());
        metas.push(meta);
    }
    for meta in metas {
        assert_eq!(meta.to_json(), serde_json::to_string(&meta).unwrap());
    }
}
