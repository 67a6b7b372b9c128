//! Whether a delivery may start now: what the task must hold besides its slot
//! ([`Registered::admit`]), then its task's rate limits ([`crate::limits`]). One that may not is
//! put off ([`super::handle`] schedules it again, holding no slot meanwhile). The place is asked
//! first because it is given back by dropping it, while a start counted against a rate (a
//! fleet-wide one in Redis) cannot be: a start refused its place uses up none of the rate.

use std::time::Duration;

use celery_redis::protocol::Message;
use celery_redis::task::{Place, Registered};

use crate::context::Context;
use crate::limits::{MAX_WAIT, MIN_WAIT};

/// `Ok(Ok(place))` when `msg` (of `task`, `None` when not registered here) may start now, its
/// starts counted against its rates and `place` held until it ends; `Ok(Err(delay))` when it
/// should be tried again `delay` after `now` (when it was taken, the server's clock), nothing
/// held or counted; `Err` when Redis failed to count a fleet-wide rate.
pub async fn admit(
    ctx: &Context,
    msg: &Message,
    task: Option<&Registered>,
    now: f64,
) -> redis::RedisResult<Result<Place, Duration>> {
    let place = match task.map_or(Ok(None), |t| t.admit(ctx.tasks.deps(), &msg.body)) {
        Ok(place) => place,
        // A task's own delay, bounded as a rate's: `Duration::MAX` would park it for ever,
        // zero would have it claimed and refused again at once, over and over.
        Err(delay) => return Ok(Err(delay.clamp(MIN_WAIT, MAX_WAIT))),
    };
    let layout = ctx.broker.layout();
    if let Some(delay) = ctx.limits.wait(&ctx.redis, layout, msg.task(), now).await? {
        return Ok(Err(delay));
    }
    Ok(Ok(place))
}
