//! The registered tasks of a worker, by name, with their dependencies: the one table from which
//! the worker dispatches, lists `inspect registered`, labels its metrics, counts `stats.total`
//! and prints its banner.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{Deps, Options, Output, Task, TaskContext, TaskError};
use crate::protocol::Body;
use crate::result::ExceptionInfo;

/// What a task holds besides its slot while it runs (see [`Task::admit`]), let go when it ends.
pub type Place = Option<Box<dyn Any + Send>>;

type Running<'b> = Pin<Box<dyn Future<Output = Result<Output, TaskError>> + Send + 'b>>;
type Run = for<'a, 'b> fn(&'b TaskContext<'a>, &'b Body) -> Running<'b>;
type Admit = fn(&Deps, &[Value], &Map<String, Value>) -> Result<Place, Duration>;

/// One registered task, its type erased.
pub struct Registered {
    name: &'static str,
    options: Options,
    admit: Admit,
    run: Run,
}

impl Registered {
    /// Its Celery name ([`Task::NAME`]).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its options ([`Task::options`]).
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// What the call in `body` must hold to start (see [`Task::admit`]).
    pub fn admit(&self, deps: &Deps, body: &Body) -> Result<Place, Duration> {
        (self.admit)(deps, &body.args, &body.kwargs)
    }

    /// Decodes the call in `body` and runs it: its result as JSON and what it sends on.
    pub fn run<'b>(&self, ctx: &'b TaskContext<'_>, body: &'b Body) -> Running<'b> {
        (self.run)(ctx, body)
    }
}

fn run<'a, 'b, T: Task>(ctx: &'b TaskContext<'a>, body: &'b Body) -> Running<'b> {
    Box::pin(async move {
        let args = T::decode(&body.args, &body.kwargs)?;
        let result = T::run(ctx, args).await?;
        let value = serde_json::to_value(result).map_err(|e| {
            TaskError::Failed(ExceptionInfo::new(
                "kombu.exceptions",
                "EncodeError",
                e.to_string(),
            ))
        })?;
        Ok(Output {
            value,
            children: ctx.take_children(),
        })
    })
}

/// The tasks a worker runs and their dependencies: `Tasks::new().task::<Add>()`.
#[derive(Default)]
pub struct Tasks {
    /// Sorted by name.
    registered: Vec<Registered>,
    deps: Deps,
}

impl Tasks {
    /// An empty table.
    pub fn new() -> Self {
        Tasks::default()
    }

    /// Registers task `T` (replacing a task registered under the same name).
    pub fn task<T: Task>(mut self) -> Self {
        let entry = Registered {
            name: T::NAME,
            options: T::options(),
            admit: T::admit,
            run: run::<T>,
        };
        match self.position(T::NAME) {
            Ok(i) => self.registered[i] = entry,
            Err(i) => self.registered.insert(i, entry),
        }
        self
    }

    /// Adds a dependency the tasks borrow by type ([`TaskContext::dep`]).
    pub fn dep<D: Any + Send + Sync>(mut self, value: D) -> Self {
        self.deps.insert(value);
        self
    }

    /// The dependencies the tasks borrow.
    pub fn deps(&self) -> &Deps {
        &self.deps
    }

    /// The dependencies, to add one after the table is built (the worker adds its Redis
    /// connection).
    pub fn deps_mut(&mut self) -> &mut Deps {
        &mut self.deps
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.registered.binary_search_by(|t| t.name.cmp(name))
    }

    /// The task registered as `name`.
    pub fn get(&self, name: &str) -> Option<&Registered> {
        self.position(name).ok().map(|i| &self.registered[i])
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.registered.iter().map(|t| t.name).collect()
    }

    /// The registered tasks, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Registered> {
        self.registered.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named<const N: usize>;

    const NAMES: [&str; 3] = ["b", "a", "c"];

    impl<const N: usize> Task for Named<N> {
        const NAME: &'static str = NAMES[N];
        const PARAMS: &'static [&'static str] = &[];
        type Args = serde_json::Map<String, Value>;
        type Output = ();

        fn options() -> Options {
            Options {
                max_retries: Some(N as u32),
                ..Options::default()
            }
        }

        async fn run(_: &TaskContext<'_>, _: Self::Args) -> Result<(), TaskError> {
            Ok(())
        }
    }

    #[test]
    fn the_table_lists_sorted_names_finds_each_with_its_options_and_holds_dependencies() {
        let tasks = Tasks::new()
            .task::<Named<0>>()
            .task::<Named<1>>()
            .task::<Named<2>>()
            .task::<Named<0>>()
            .dep(7u16);
        assert_eq!(tasks.names(), vec!["a", "b", "c"], "sorted, each once");
        assert_eq!(
            tasks.get("c").map(|t| t.options().max_retries),
            Some(Some(2))
        );
        assert!(tasks.get("d").is_none());
        assert_eq!(tasks.deps().get::<u16>(), Some(&7));
        assert_eq!(tasks.deps().get::<u32>(), None);
    }
}
