//! Headers and properties written as JSON by hand, field for field what their serde derive
//! writes (`Envelope::to_json`; the vectors tests compare the two on every captured message).

use super::super::json::{self, Object};
use super::{Headers, Properties};

impl Headers {
    pub(super) fn write_json(&self, out: &mut String) {
        let mut o = Object::new(out);
        json::opt_string(o.key("lang"), self.lang.as_deref());
        json::string(o.key("task"), &self.task);
        json::string(o.key("id"), &self.id);
        json::opt_string(o.key("shadow"), self.shadow.as_deref());
        json::opt_string(o.key("eta"), self.eta.as_deref());
        json::opt_string(o.key("expires"), self.expires.as_deref());
        json::opt_string(o.key("group"), self.group.as_deref());
        json::opt_int(o.key("group_index"), self.group_index);
        json::opt_int(o.key("retries"), Some(self.retries));
        match self.timelimit {
            [None, None] => o.key("timelimit").push_str("[null,null]"),
            limits => json::serde(o.key("timelimit"), &limits),
        }
        json::opt_string(o.key("root_id"), self.root_id.as_deref());
        json::opt_string(o.key("parent_id"), self.parent_id.as_deref());
        json::opt_string(o.key("argsrepr"), self.argsrepr.as_deref());
        json::opt_string(o.key("kwargsrepr"), self.kwargsrepr.as_deref());
        json::opt_string(o.key("origin"), self.origin.as_deref());
        json::bool(o.key("ignore_result"), self.ignore_result);
        json::opt_int(
            o.key("replaced_task_nesting"),
            Some(self.replaced_task_nesting),
        );
        json::opt_value(o.key("stamped_headers"), self.stamped_headers.as_ref());
        json::value(o.key("stamps"), &self.stamps);
        o.rest(&self.extra);
        o.end();
    }
}

impl Properties {
    pub(in crate::protocol) fn write_json(&self, out: &mut String) {
        let mut o = Object::new(out);
        json::opt_string(o.key("correlation_id"), self.correlation_id.as_deref());
        json::opt_string(o.key("reply_to"), self.reply_to.as_deref());
        json::opt_int(o.key("delivery_mode"), self.delivery_mode);
        match &self.delivery_info {
            Some(info) => {
                let mut i = Object::new(o.key("delivery_info"));
                json::string(i.key("exchange"), &info.exchange);
                json::string(i.key("routing_key"), &info.routing_key);
                i.rest(&info.extra);
                i.end();
            }
            None => o.key("delivery_info").push_str("null"),
        }
        json::opt_int(o.key("priority"), self.priority);
        json::opt_string(o.key("body_encoding"), self.body_encoding.as_deref());
        json::opt_string(o.key("delivery_tag"), self.delivery_tag.as_deref());
        o.rest(&self.extra);
        o.end();
    }
}
