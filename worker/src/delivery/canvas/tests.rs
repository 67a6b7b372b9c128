//! Unit tests of the canvas: each shape a finished task may send on, as Celery sends it.

use super::*;
use celery_redis::protocol::body::MAX_CANVAS;
use celery_redis::protocol::Message;
use serde_json::json;

fn echo(id: &str) -> Value {
    json!({"task": "echo", "args": [], "kwargs": {}, "options": {"task_id": id}, "immutable": false})
}

fn group(id: Option<&str>, tasks: Vec<Value>) -> Value {
    let options = id.map_or(json!({}), |id| json!({"task_id": id}));
    json!({"task": "celery.group", "args": [], "kwargs": {"tasks": tasks}, "options": options,
           "subtask_type": "group", "immutable": false})
}

fn chain(tasks: Vec<Value>) -> Value {
    json!({"task": "celery.chain", "args": [], "kwargs": {"tasks": tasks}, "options": {},
           "subtask_type": "chain", "immutable": false})
}

/// A running task `parent` (root `root`) whose embed is `embed`.
fn parent(embed: Value) -> Message {
    let mut m = TaskMessage::new("process_order", "celery", Default::default());
    m.id = "parent".into();
    m.root_id = Some("root".into());
    m.body.embed = serde_json::from_value(embed).unwrap();
    Message::decode(m.to_json("test@host").as_bytes()).unwrap()
}

fn routes() -> Routes {
    Routes::to("celery")
}

fn names(out: &[TaskMessage]) -> Vec<&str> {
    out.iter().map(|m| m.task.as_str()).collect()
}

#[test]
fn a_group_as_the_next_chain_step_sends_its_members_with_the_frozen_ids() {
    let step = group(Some("g-1"), vec![echo("m-0"), echo("m-1")]);
    let msg = parent(json!({"chain": [step]}));
    let sent = on_success(&msg, &json!({"ok": 1}), &routes()).unwrap();
    assert_eq!(names(&sent.messages), ["echo", "echo"]);
    for (i, m) in sent.messages.iter().enumerate() {
        assert_eq!(m.id, format!("m-{i}"));
        assert_eq!(m.group.as_deref(), Some("g-1"));
        assert_eq!(m.group_index, Some(i as i64));
        assert_eq!(m.body.args, [json!({"ok": 1})], "the parent's result first");
        assert_eq!(m.parent_id.as_deref(), Some("parent"));
        assert_eq!(m.root_id.as_deref(), Some("root"));
        assert_eq!(
            m.body.embed.chain,
            Some(vec![]),
            "the rest of the chain: nothing"
        );
    }
    assert_eq!(
        sent.children,
        [json!([
            ["g-1", null],
            [[["m-0", null], null], [["m-1", null], null]]
        ])],
        "a GroupResult as Celery's add_trail records it"
    );
}

#[test]
fn immutable_members_get_no_parent_result_and_nested_groups_are_flattened() {
    let mut fixed = echo("m-0");
    fixed["immutable"] = json!(true);
    fixed["args"] = json!([7]);
    let step = group(
        None,
        vec![
            fixed,
            group(Some("ignored"), vec![echo("n-0"), echo("n-1")]),
        ],
    );
    let msg = parent(json!({"chain": [step]}));
    let sent = on_success(&msg, &json!(5), &routes()).unwrap();
    let m = &sent.messages;
    assert_eq!(m.len(), 3);
    assert_eq!(m[0].body.args, [json!(7)]);
    assert_eq!(m[1].body.args, [json!(5)]);
    let gid = m[0].group.clone().unwrap();
    assert_ne!(
        gid, "ignored",
        "a nested group is flattened into the outer one"
    );
    assert!(m.iter().all(|x| x.group.as_deref() == Some(gid.as_str())));
    let indexes: Vec<_> = m.iter().map(|x| x.group_index).collect();
    assert_eq!(
        indexes,
        [Some(0), Some(0), Some(1)],
        "indexed within their own list"
    );
}

#[test]
fn a_chain_in_link_runs_as_a_chain_its_rest_reversed() {
    let link = chain(vec![echo("c-0"), echo("c-1"), echo("c-2")]);
    let msg = parent(json!({"callbacks": [link]}));
    let sent = on_success(&msg, &json!("r"), &routes()).unwrap();
    assert_eq!(sent.messages.len(), 1, "only the first step is sent now");
    let first = &sent.messages[0];
    assert_eq!(first.id, "c-0");
    assert_eq!(first.body.args, [json!("r")]);
    let rest: Vec<_> = first.body.embed.chain.as_ref().unwrap().iter().collect();
    let ids: Vec<_> = rest.iter().map(|s| s.options["task_id"].clone()).collect();
    assert_eq!(ids, [json!("c-2"), json!("c-1")], "Celery's reversed order");
    assert_eq!(sent.children, [json!([["c-0", null], null])]);
}

#[test]
fn a_group_in_link_error_is_flattened_into_the_errback_group() {
    let errback = group(Some("eg"), vec![echo("e-0"), echo("e-1")]);
    let msg = parent(json!({"errbacks": [errback, echo("e-2")]}));
    let out = on_failure(&msg, &routes()).unwrap();
    assert_eq!(names(&out), ["echo", "echo", "echo"]);
    assert!(out.iter().all(|m| m.body.args == [json!("parent")]));
    let gid = out[0].group.clone().unwrap();
    assert!(out.iter().all(|m| m.group.as_deref() == Some(gid.as_str())));
    let ids: Vec<_> = out.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["e-0", "e-1", "e-2"]);
}

#[test]
fn a_chain_member_of_a_group_names_the_group_on_its_last_step() {
    let step = group(
        Some("g"),
        vec![chain(vec![echo("a"), echo("b")]), echo("c")],
    );
    let msg = parent(json!({"chain": [echo("after"), step]}));
    let sent = on_success(&msg, &json!(1), &routes()).unwrap();
    assert_eq!(sent.messages.len(), 2);
    let (a, c) = (&sent.messages[0], &sent.messages[1]);
    assert_eq!((a.id.as_str(), a.group.as_deref()), ("a", None));
    let carried = a.body.embed.chain.as_ref().unwrap();
    // The outer rest (`after`) runs after the member's own chain (`b`), as Celery carries it.
    assert_eq!(carried.len(), 2);
    assert_eq!(carried[1].options["task_id"], "b");
    assert_eq!(carried[1].options["group_id"], "g");
    assert_eq!(carried[1].options["group_index"], 0);
    assert_eq!(carried[0].options["task_id"], "after");
    assert_eq!((c.group.as_deref(), c.group_index), (Some("g"), Some(1)));
    assert_eq!(
        sent.children,
        [json!([
            ["g", null],
            [[["b", [["a", null], null]], null], [["c", null], null]]
        ])]
    );
}

#[test]
fn a_group_inside_a_chain_inside_a_link_is_applied_when_its_turn_comes() {
    let link = chain(vec![
        echo("x"),
        group(Some("g"), vec![echo("y"), echo("z")]),
    ]);
    let msg = parent(json!({"callbacks": [link]}));
    let sent = on_success(&msg, &json!(1), &routes()).unwrap();
    assert_eq!(names(&sent.messages), ["echo"]);
    let carried = sent.messages[0].body.embed.chain.clone().unwrap();
    assert_eq!(
        carried[0].task, "celery.group",
        "the group travels as a signature"
    );
    // When `x` ends, the worker running it applies the group.
    let mut next = TaskMessage::new("echo", "celery", Default::default());
    next.body.embed.chain = Some(carried);
    let x = Message::decode(next.to_json("t").as_bytes()).unwrap();
    let sent = on_success(&x, &json!(2), &routes()).unwrap();
    let ids: Vec<_> = sent.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["y", "z"]);
}

#[test]
fn several_callbacks_are_one_group_and_each_group_callback_its_own() {
    let msg = parent(json!({"callbacks": [
        echo("p-0"), group(Some("g"), vec![echo("m-0")]), echo("p-1")]}));
    let sent = on_success(&msg, &json!(1), &routes()).unwrap();
    let ids: Vec<_> = sent.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        ["m-0", "p-0", "p-1"],
        "groups first, then the plain ones"
    );
    let plain = sent.messages[1].group.clone().unwrap();
    assert_ne!(plain, "g");
    assert_eq!(sent.messages[2].group.as_deref(), Some(plain.as_str()));
    assert_eq!(
        sent.children.len(),
        2,
        "two GroupResults: {:?}",
        sent.children
    );
}

fn chord(header: Value, body: Value, id: Option<&str>) -> Value {
    let options = id.map_or(json!({}), |id| json!({"task_id": id}));
    json!({"task": "celery.chord", "args": [], "options": options, "subtask_type": "chord",
           "kwargs": {"header": header, "body": body, "kwargs": {}}, "immutable": false})
}

#[test]
fn a_chord_as_the_next_chain_step_sends_its_header_carrying_the_body() {
    let step = chord(
        group(Some("g"), vec![echo("h-0"), echo("h-1")]),
        echo("b"),
        Some("g"),
    );
    let msg = parent(json!({"chain": [echo("after"), step]}));
    let sent = on_success(&msg, &json!(1), &routes()).unwrap();
    let ids: Vec<_> = sent.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        ["h-0", "h-1"],
        "the header only: the body waits for the join"
    );
    for (i, m) in sent.messages.iter().enumerate() {
        assert_eq!(
            (m.group.as_deref(), m.group_index),
            (Some("g"), Some(i as i64))
        );
        assert_eq!(m.body.args, [json!(1)]);
        assert_eq!(
            m.body.embed.chain, None,
            "the rest goes with the body, not the header"
        );
        let body = m.body.embed.chord.as_ref().unwrap();
        assert_eq!(body["task"], "echo");
        assert_eq!(body["options"]["task_id"], "b");
        assert_eq!(
            body["options"]["group_id"], "g",
            "as Celery freezes the body"
        );
        assert_eq!(body["options"]["root_id"], "root");
        assert_eq!(body["options"]["chain"][0]["options"]["task_id"], "after");
    }
    assert_eq!(sent.chord_sizes, [("g".to_owned(), 2)]);
    assert_eq!(
        sent.children,
        [json!([
            ["g", null],
            [[["h-0", null], null], [["h-1", null], null]]
        ])]
    );
}

#[test]
fn a_group_then_a_step_in_a_linked_chain_is_the_chord_celery_makes_of_it() {
    let link = chain(vec![
        group(
            Some("g"),
            vec![echo("a"), chain(vec![echo("c0"), echo("c1")])],
        ),
        echo("b"),
    ]);
    let msg = parent(json!({"callbacks": [link]}));
    let sent = on_success(&msg, &json!(1), &routes()).unwrap();
    let ids: Vec<_> = sent.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["a", "c0"]);
    assert_eq!(
        sent.chord_sizes,
        [("g".to_owned(), 2)],
        "a chain member counts once"
    );
    assert_eq!(
        sent.messages[0].body.embed.chord.as_ref().unwrap()["options"]["task_id"],
        "b"
    );
    // The chain member: its last step names the group and carries the body.
    let c1 = &sent.messages[1].body.embed.chain.as_ref().unwrap()[0];
    assert_eq!(c1.options["group_id"], "g");
    assert_eq!(c1.options["chord"]["options"]["task_id"], "b");
    assert_eq!(sent.messages[1].body.embed.chord, None);
}

#[test]
fn a_chord_with_an_empty_header_sends_its_body_at_once() {
    let step = chord(group(None, vec![]), echo("b"), None);
    let msg = parent(json!({"chain": [step]}));
    let sent = on_success(&msg, &json!(1), &routes()).unwrap();
    assert_eq!(names(&sent.messages), ["echo"]);
    assert_eq!(sent.messages[0].body.args, [json!([])]);
    assert!(sent.chord_sizes.is_empty());
}

#[test]
fn a_chord_inside_a_group_is_refused_clearly_and_nothing_named_celery_is_sent() {
    let inner = chord(group(None, vec![echo("h")]), echo("b"), None);
    let msg = parent(json!({"chain": [group(None, vec![inner, echo("x")])]}));
    let refused = on_success(&msg, &json!(1), &routes()).err().unwrap();
    assert!(matches!(refused, apply::Refused::Chord));
    assert_eq!(refused.exception().exc_type, "NotImplementedError");
    let bad = chord(json!("nope"), echo("b"), None);
    let msg = parent(json!({"callbacks": [bad]}));
    assert!(matches!(
        on_success(&msg, &json!(1), &routes()),
        Err(apply::Refused::Malformed(..))
    ));
}

#[test]
fn a_canvas_expanding_past_the_bound_is_refused() {
    // Each group holds 40 groups of 40: 1600 messages from one small signature list.
    let inner = group(None, (0..40).map(|i| echo(&format!("i{i}"))).collect());
    let outer = group(None, vec![inner; 40]);
    let msg = parent(json!({"chain": [outer]}));
    let refused = on_success(&msg, &json!(1), &routes()).err().unwrap();
    assert!(matches!(refused, apply::Refused::TooLarge), "{refused}");
    assert_eq!(refused.exception().exc_type, "ValueError");
    // A chain copied to every member is bounded too.
    let wide = group(None, (0..100).map(|i| echo(&format!("w{i}"))).collect());
    let rest = vec![echo("r"); 20];
    let mut steps = rest;
    steps.push(wide);
    let msg = parent(json!({"chain": steps}));
    assert!(matches!(
        on_success(&msg, &json!(1), &routes()),
        Err(apply::Refused::TooManyCarried)
    ));
    // Exactly the bound is fine.
    let full = group(
        None,
        (0..MAX_CANVAS).map(|i| echo(&format!("f{i}"))).collect(),
    );
    let msg = parent(json!({"chain": [full]}));
    assert_eq!(
        on_success(&msg, &json!(1), &routes())
            .unwrap()
            .messages
            .len(),
        MAX_CANVAS
    );
}

#[test]
fn nesting_past_the_depth_bound_is_refused() {
    let mut deep = echo("leaf");
    // 12 pairs: 24 levels, within what a message's JSON may nest.
    for _ in 0..12 {
        deep = chain(vec![group(None, vec![deep])]);
    }
    let msg = parent(json!({"callbacks": [deep]}));
    assert!(matches!(
        on_success(&msg, &json!(1), &routes()),
        Err(apply::Refused::TooDeep)
    ));
}

#[test]
fn a_malformed_group_is_refused_not_sent_under_its_name() {
    let bad = json!({"task": "celery.group", "kwargs": {"tasks": "nope"}, "options": {}});
    let msg = parent(json!({"callbacks": [bad]}));
    assert!(matches!(
        on_success(&msg, &json!(1), &routes()),
        Err(apply::Refused::Malformed(..))
    ));
}

#[test]
fn a_plain_step_keeps_its_own_links_and_frozen_group() {
    let mut step = echo("s");
    step["options"]["link_error"] = echo("eb");
    step["options"]["group_id"] = json!("g");
    step["options"]["group_index"] = json!(3);
    let msg = parent(json!({"chain": [step]}));
    let m = &on_success(&msg, &json!(1), &routes()).unwrap().messages[0];
    assert_eq!(m.body.embed.errbacks.as_ref().unwrap()[0].task, "echo");
    assert_eq!((m.group.as_deref(), m.group_index), (Some("g"), Some(3)));
}

#[test]
fn a_chains_own_options_go_where_celery_puts_them() {
    let mut link = chain(vec![echo("a"), echo("b"), echo("c")]);
    link["options"] = json!({"queue": "q1", "link": echo("done"), "link_error": [echo("eb")]});
    let msg = parent(json!({"callbacks": [link]}));
    let sent = on_success(&msg, &json!(1), &routes()).unwrap();
    let first = &sent.messages[0];
    assert_eq!(
        first.queue, "q1",
        "the chain's queue goes to its first step"
    );
    assert_eq!(
        first.body.embed.errbacks.as_ref().unwrap()[0].options["task_id"],
        "eb"
    );
    assert_eq!(first.body.embed.callbacks, None);
    let rest = first.body.embed.chain.as_ref().unwrap();
    let (c, b) = (&rest[0], &rest[1]);
    assert_eq!(
        c.options["link"][0]["options"]["task_id"], "done",
        "link: the last step"
    );
    assert!(b.options.get("link").is_none());
    assert_eq!(
        b.options["link_error"][0]["options"]["task_id"], "eb",
        "link_error: each"
    );
}

#[test]
fn a_step_carrying_its_own_chain_option_sends_it_on() {
    let mut body = echo("body");
    body["options"]["chain"] = json!([echo("after")]);
    let msg = parent(json!({"callbacks": [body]}));
    let sent = on_success(&msg, &json!(1), &routes()).unwrap();
    let carried = sent.messages[0].body.embed.chain.as_ref().unwrap();
    assert_eq!(carried[0].options["task_id"], "after");
}

#[test]
fn what_a_signature_is_follows_its_subtask_type_as_in_celery() {
    let mut g = group(Some("g"), vec![echo("m")]);
    g["task"] = json!("not.celery.group");
    let msg = parent(json!({"chain": [g]}));
    let sent = on_success(&msg, &json!(1), &routes()).unwrap();
    assert_eq!(names(&sent.messages), ["echo"]);
    assert_eq!(sent.messages[0].group.as_deref(), Some("g"));
}

#[test]
fn an_empty_group_sends_nothing_and_is_not_a_child() {
    let msg = parent(json!({"chain": [group(Some("g"), vec![])]}));
    let sent = on_success(&msg, &json!(1), &routes()).unwrap();
    assert!(sent.messages.is_empty());
    assert!(sent.children.is_empty());
}

#[test]
fn a_chord_bodys_chain_copied_to_each_member_is_bounded() {
    let header = group(None, (0..100).map(|i| echo(&format!("h{i}"))).collect());
    let mut steps = vec![echo("r"); 20];
    steps.push(chord(header, echo("b"), None));
    let msg = parent(json!({"chain": steps}));
    assert!(matches!(
        on_success(&msg, &json!(1), &routes()),
        Err(apply::Refused::TooManyCarried)
    ));
}

#[test]
fn a_chord_body_applied_on_its_own_carries_the_rest_of_its_chain() {
    // What a chord join sends: the body frozen by `chord` above, with the header's results.
    let step = chord(group(Some("g"), vec![echo("h")]), echo("b"), None);
    let msg = parent(json!({"chain": [echo("after"), step]}));
    let sent = on_success(&msg, &json!(1), &routes()).unwrap();
    let body = sent.messages[0].body.embed.chord.clone().unwrap();
    let body = serde_json::from_value(body).unwrap();
    let out = apply_one(&msg, &body, Some(&json!([1])), &routes()).unwrap();
    let m = &out.messages[0];
    assert_eq!((m.id.as_str(), m.group.as_deref()), ("b", Some("g")));
    assert_eq!(m.body.args, [json!([1])]);
    assert_eq!(
        m.body.embed.chain.as_ref().unwrap()[0].options["task_id"],
        "after"
    );
}

/// Sends `sent`'s message `i` on as if it succeeded with `result`: what its own end sends.
fn next_of(sent: &Sent, i: usize, result: Value) -> Sent {
    let m = &sent.messages[i];
    let msg = Message::decode(m.to_json("test@host").as_bytes()).unwrap();
    on_success(&msg, &result, &routes()).unwrap()
}

#[test]
fn a_chain_ending_in_a_group_in_a_chords_header_is_refused_not_left_waiting() {
    // The chord counts the group's members (`.s` = 2), but the group, applied when the chain
    // gets to it, would send them without the body: nobody would ever publish it. Refused
    // clearly instead (Celery's own freeze joins them under the inner group, where no `.s` is).
    let header = group(
        Some("g"),
        vec![chain(vec![
            echo("a"),
            group(None, vec![echo("x"), echo("y")]),
        ])],
    );
    let msg = parent(json!({"chain": [chord(header, echo("b"), Some("g"))]}));
    match on_success(&msg, &json!(1), &routes()) {
        Err(refused) => assert!(matches!(refused, apply::Refused::Chord), "{refused}"),
        Ok(sent) => {
            let then = next_of(&sent, 0, json!(2));
            let carry: Vec<_> = then
                .messages
                .iter()
                .map(|m| m.body.embed.chord.is_some())
                .collect();
            panic!(
                "sent {:?}; its members carry the body: {carry:?}",
                names(&then.messages)
            );
        }
    }
    // The same with a chord as the chain's last step.
    let inner = chord(group(None, vec![echo("x")]), echo("c"), None);
    let header = group(Some("g"), vec![chain(vec![echo("a"), inner])]);
    let msg = parent(json!({"chain": [chord(header, echo("b"), Some("g"))]}));
    assert!(matches!(
        on_success(&msg, &json!(1), &routes()),
        Err(apply::Refused::Chord)
    ));
}
