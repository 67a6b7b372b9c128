//! Headers and properties written as JSON by hand, field for field what their serde derive
//! writes (`Envelope::to_json`; the vectors tests compare the two on every captured message).
//! They are written from borrowed fields, so a decoded envelope sent on and a task being
//! published (`TaskMessage::to_json`, no `Envelope` built) go through this one writer.

use serde_json::Value;

use super::super::json::{self, Object};
use super::{Headers, Properties};

/// Celery's headers as written; `extra` are the headers after the standard ones.
pub(in crate::protocol) struct HeaderFields<'a, X> {
    pub lang: Option<&'a str>,
    pub task: &'a str,
    pub id: &'a str,
    pub shadow: Option<&'a str>,
    pub eta: Option<&'a str>,
    pub expires: Option<&'a str>,
    pub group: Option<&'a str>,
    pub group_index: Option<i64>,
    pub retries: i64,
    pub timelimit: [Option<f64>; 2],
    pub root_id: Option<&'a str>,
    pub parent_id: Option<&'a str>,
    pub argsrepr: Option<&'a str>,
    pub kwargsrepr: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub ignore_result: bool,
    pub replaced_task_nesting: i64,
    pub stamped_headers: Option<&'a Value>,
    /// `None` writes an empty object.
    pub stamps: Option<&'a Value>,
    pub extra: X,
}

/// kombu's properties as written; `delivery_info` is the exchange, the routing key and the
/// rest of its fields, `extra` the properties after the standard ones.
pub(in crate::protocol) struct PropertyFields<'a, D, X> {
    pub correlation_id: Option<&'a str>,
    pub reply_to: Option<&'a str>,
    pub delivery_mode: Option<i64>,
    pub delivery_info: Option<(&'a str, &'a str, D)>,
    pub priority: Option<i64>,
    pub body_encoding: Option<&'a str>,
    pub delivery_tag: Option<&'a str>,
    pub extra: X,
}

impl<'a, X: Iterator<Item = (&'a String, &'a Value)>> HeaderFields<'a, X> {
    pub(in crate::protocol) fn write(self, out: &mut String) {
        let mut o = Object::new(out);
        json::opt_string(o.key("lang"), self.lang);
        json::string(o.key("task"), self.task);
        json::string(o.key("id"), self.id);
        json::opt_string(o.key("shadow"), self.shadow);
        json::opt_string(o.key("eta"), self.eta);
        json::opt_string(o.key("expires"), self.expires);
        json::opt_string(o.key("group"), self.group);
        json::opt_int(o.key("group_index"), self.group_index);
        json::opt_int(o.key("retries"), Some(self.retries));
        match self.timelimit {
            [None, None] => o.key("timelimit").push_str("[null,null]"),
            limits => json::serde(o.key("timelimit"), &limits),
        }
        json::opt_string(o.key("root_id"), self.root_id);
        json::opt_string(o.key("parent_id"), self.parent_id);
        json::opt_string(o.key("argsrepr"), self.argsrepr);
        json::opt_string(o.key("kwargsrepr"), self.kwargsrepr);
        json::opt_string(o.key("origin"), self.origin);
        json::bool(o.key("ignore_result"), self.ignore_result);
        json::opt_int(
            o.key("replaced_task_nesting"),
            Some(self.replaced_task_nesting),
        );
        json::opt_value(o.key("stamped_headers"), self.stamped_headers);
        match self.stamps {
            Some(stamps) => json::value(o.key("stamps"), stamps),
            None => o.key("stamps").push_str("{}"),
        }
        o.rest(self.extra);
        o.end();
    }
}

impl<'a, D, X> PropertyFields<'a, D, X>
where
    D: Iterator<Item = (&'a String, &'a Value)>,
    X: Iterator<Item = (&'a String, &'a Value)>,
{
    pub(in crate::protocol) fn write(self, out: &mut String) {
        let mut o = Object::new(out);
        json::opt_string(o.key("correlation_id"), self.correlation_id);
        json::opt_string(o.key("reply_to"), self.reply_to);
        json::opt_int(o.key("delivery_mode"), self.delivery_mode);
        match self.delivery_info {
            Some((exchange, routing_key, extra)) => {
                let mut i = Object::new(o.key("delivery_info"));
                json::string(i.key("exchange"), exchange);
                json::string(i.key("routing_key"), routing_key);
                i.rest(extra);
                i.end();
            }
            None => o.key("delivery_info").push_str("null"),
        }
        json::opt_int(o.key("priority"), self.priority);
        json::opt_string(o.key("body_encoding"), self.body_encoding);
        json::opt_string(o.key("delivery_tag"), self.delivery_tag);
        o.rest(self.extra);
        o.end();
    }
}

impl Headers {
    pub(super) fn fields(&self) -> HeaderFields<'_, serde_json::map::Iter<'_>> {
        HeaderFields {
            lang: self.lang.as_deref(),
            task: &self.task,
            id: &self.id,
            shadow: self.shadow.as_deref(),
            eta: self.eta.as_deref(),
            expires: self.expires.as_deref(),
            group: self.group.as_deref(),
            group_index: self.group_index,
            retries: self.retries,
            timelimit: self.timelimit,
            root_id: self.root_id.as_deref(),
            parent_id: self.parent_id.as_deref(),
            argsrepr: self.argsrepr.as_deref(),
            kwargsrepr: self.kwargsrepr.as_deref(),
            origin: self.origin.as_deref(),
            ignore_result: self.ignore_result,
            replaced_task_nesting: self.replaced_task_nesting,
            stamped_headers: self.stamped_headers.as_ref(),
            stamps: Some(&self.stamps),
            extra: self.extra.iter(),
        }
    }
}

impl Properties {
    pub(in crate::protocol) fn fields(
        &self,
    ) -> PropertyFields<'_, serde_json::map::Iter<'_>, serde_json::map::Iter<'_>> {
        PropertyFields {
            correlation_id: self.correlation_id.as_deref(),
            reply_to: self.reply_to.as_deref(),
            delivery_mode: self.delivery_mode,
            delivery_info: self
                .delivery_info
                .as_ref()
                .map(|i| (i.exchange.as_str(), i.routing_key.as_str(), i.extra.iter())),
            priority: self.priority,
            body_encoding: self.body_encoding.as_deref(),
            delivery_tag: self.delivery_tag.as_deref(),
            extra: self.extra.iter(),
        }
    }
}
