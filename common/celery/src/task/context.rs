//! What a running task sees and may do: its request (Celery's `self.request`), tasks it sends
//! on, its point of no return, and its own dependencies ([`Deps`], filled by whoever builds
//! the worker) — not the worker's internals.

use std::any::{Any, TypeId};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::protocol::{DeliveryInfo, Message, TaskMessage};
use crate::routes::Routes;

use super::{Stop, TaskError};

/// A task's dependencies by type (a connection, a client, a setting in a newtype): put in
/// once when the worker is built, borrowed by every run. A handful at most, found by a scan
/// (a hash map's SipHash cost more than the scan, measured: a task borrows several per run).
#[derive(Default, Clone)]
pub struct Deps {
    by_type: Vec<(TypeId, Arc<dyn Any + Send + Sync>)>,
}

impl Deps {
    /// Adds (or replaces) the dependency of type `T`.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        let value: Arc<dyn Any + Send + Sync> = Arc::new(value);
        match self.by_type.iter_mut().find(|(t, _)| *t == id) {
            Some(slot) => slot.1 = value,
            None => self.by_type.push((id, value)),
        }
    }

    /// The dependency of type `T`, if one was put in.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        let (_, value) = self.by_type.iter().find(|(t, _)| *t == id)?;
        value.downcast_ref()
    }
}

/// The running task's view of its delivery.
pub struct TaskContext<'a> {
    msg: &'a Message,
    hostname: &'a str,
    queue: &'a str,
    routes: &'a Routes,
    stop: &'a Stop,
    deps: &'a Deps,
    children: Mutex<Vec<TaskMessage>>,
}

impl<'a> TaskContext<'a> {
    /// The context of `msg`, taken from `queue` by the worker `hostname`.
    pub fn new(
        msg: &'a Message,
        hostname: &'a str,
        queue: &'a str,
        routes: &'a Routes,
        stop: &'a Stop,
        deps: &'a Deps,
    ) -> Self {
        TaskContext {
            msg,
            hostname,
            queue,
            routes,
            stop,
            deps,
            children: Mutex::new(Vec::new()),
        }
    }

    /// Its task id (Celery's `self.request.id`).
    pub fn id(&self) -> &str {
        self.msg.id()
    }

    /// The task name the message asked for.
    pub fn name(&self) -> &str {
        self.msg.task()
    }

    /// The first task of its workflow (its own id when none is given).
    pub fn root_id(&self) -> &str {
        let headers = &self.msg.envelope.headers;
        headers.root_id.as_deref().unwrap_or(self.msg.id())
    }

    /// The id of the task that sent it, if a task did.
    pub fn parent_id(&self) -> Option<&str> {
        self.msg.envelope.headers.parent_id.as_deref()
    }

    /// The id of the group it belongs to.
    pub fn group(&self) -> Option<&str> {
        self.msg.envelope.headers.group.as_deref()
    }

    /// How many times it was retried before this attempt.
    pub fn retries(&self) -> i64 {
        self.msg.envelope.headers.retries
    }

    /// Its `eta` header as sent (ISO 8601).
    pub fn eta(&self) -> Option<&str> {
        self.msg.envelope.headers.eta.as_deref()
    }

    /// How it was delivered (exchange, routing key, priority), as the message says.
    pub fn delivery_info(&self) -> Option<&DeliveryInfo> {
        self.msg.envelope.properties.delivery_info.as_ref()
    }

    /// The queue it was taken from.
    pub fn queue(&self) -> &str {
        self.queue
    }

    /// The worker's node name (`celery@host`).
    pub fn hostname(&self) -> &str {
        self.hostname
    }

    /// Its positional arguments, as sent.
    pub fn args(&self) -> &[Value] {
        &self.msg.body.args
    }

    /// Its keyword arguments, as sent.
    pub fn kwargs(&self) -> &Map<String, Value> {
        &self.msg.body.kwargs
    }

    /// Its dependency of type `T`; a worker built without one fails the task (RuntimeError).
    pub fn dep<T: Any + Send + Sync>(&self) -> Result<&T, TaskError> {
        self.deps.get().ok_or_else(|| {
            TaskError::builtin(
                "RuntimeError",
                format!(
                    "the worker was built without the dependency {}",
                    std::any::type_name::<T>()
                ),
            )
        })
    }

    /// A call of task `name` with `kwargs`, as a child of this task (its parent and root set as
    /// Celery sets them, in its trace), routed as the worker routes `name`. Give it to
    /// [`TaskContext::send`] to send it.
    pub fn child(&self, name: &str, kwargs: Map<String, Value>) -> TaskMessage {
        let msg = TaskMessage::new(name, self.routes.queue_for(name), kwargs)
            .child_of(self.id(), self.root_id());
        traced(msg)
    }

    /// Sends `msg` on when the task succeeds: published before its result is stored, in the
    /// same step (nothing is sent for a task that fails).
    pub fn send(&self, msg: TaskMessage) {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        children.push(msg);
    }

    /// The task's point of no return, called just before its effect (a write that must not be
    /// left without the task's result): from here a terminate or a time limit no longer stops
    /// it. `Err` when one came first: the task returns it without applying its effect, and is
    /// stored REVOKED (or failed by its time limit). Before this call a task may be dropped at
    /// any await point, so nothing before it may change anything.
    pub fn commit(&self) -> Result<(), TaskError> {
        self.stop.commit().map_err(TaskError::Stopped)
    }

    /// What it sent with [`TaskContext::send`], in order.
    pub fn take_children(&self) -> Vec<TaskMessage> {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *children)
    }
}

/// `msg` in the current trace (a child span of the running task's), when there is one.
pub fn traced(msg: TaskMessage) -> TaskMessage {
    match observe::trace::current() {
        Some(trace) => msg.with_headers(trace.child().headers()),
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::Deps;

    #[derive(Debug, PartialEq)]
    struct Url(&'static str);

    #[test]
    fn a_dependency_is_found_by_its_type_and_replaced_by_another_of_it() {
        let mut deps = Deps::default();
        assert_eq!(deps.get::<Url>(), None);
        deps.insert(Url("first"));
        deps.insert(7u32);
        deps.insert(Url("second"));
        assert_eq!(deps.get::<Url>(), Some(&Url("second")));
        assert_eq!(deps.get::<u32>(), Some(&7));
        assert_eq!(deps.get::<u64>(), None);
        assert_eq!(deps.by_type.len(), 2, "replaced, not added");
    }
}
