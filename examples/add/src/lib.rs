//! A task of your own, in one file: `add(x, y) -> x + y`, callable from Python as
//! `app.send_task("add", args=(2, 3))`. Register it with `Tasks::new().task::<Add>()`
//! (see `main.rs`); docs/tasks.md walks through it.

use celery_redis::task::{Options, Task, TaskContext, TaskError};
use serde::Deserialize;

/// The task: its name, parameters, arguments, result and options.
pub struct Add;

/// Its arguments, bound from a Celery call's `args` (in [`Task::PARAMS`] order) and `kwargs`.
#[derive(Deserialize)]
pub struct AddArgs {
    pub x: i64,
    pub y: i64,
}

impl Task for Add {
    const NAME: &'static str = "add";
    const PARAMS: &'static [&'static str] = &["x", "y"];
    type Args = AddArgs;
    type Output = i64;

    fn options() -> Options {
        Options {
            time_limit: Some(10.0),
            ..Options::default()
        }
    }

    async fn run(_ctx: &TaskContext<'_>, args: AddArgs) -> Result<i64, TaskError> {
        args.x
            .checked_add(args.y)
            .ok_or_else(|| TaskError::builtin("OverflowError", "the sum does not fit in 64 bits"))
    }
}
