//! What a failed Redis call says about what it wrote: the refusals that come before anything is
//! written (the services answer them `redis_unavailable`, not `outcome_unknown`), and among them
//! the one for lack of memory (the worker hands back what it holds and stops claiming).

use redis::RedisError;

/// Redis refused the command for lack of memory (`maxmemory` reached under `noeviction`): an
/// `OOM` error reply, given before anything was written (see `scripts.rs`).
pub fn refused_for_memory(e: &RedisError) -> bool {
    e.code() == Some("OOM")
}

/// The call wrote nothing: the connection was refused before it was sent, or the server refused
/// it before running it. These refusals come before a command runs, and inside a script only at
/// its first write, when nothing is written yet: out of memory (`OOM`), a replica or a master
/// without its replicas or disk (`READONLY`, `MASTERDOWN`, `NOREPLICAS`, `MISCONF`), still
/// loading (`LOADING`), busy with a script (`BUSY`), not authenticated (`NOAUTH`). A timeout or
/// a connection lost after sending is not one of them: the write may have happened.
pub fn nothing_written(e: &RedisError) -> bool {
    e.is_connection_refusal()
        || matches!(
            e.code(),
            Some(
                "OOM"
                    | "READONLY"
                    | "MASTERDOWN"
                    | "NOREPLICAS"
                    | "MISCONF"
                    | "LOADING"
                    | "BUSY"
                    | "NOAUTH"
            )
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: &str) -> RedisError {
        redis::make_extension_error(code.to_owned(), Some("refused".to_owned()))
    }

    #[test]
    fn an_oom_reply_wrote_nothing_and_a_timeout_may_have_written() {
        assert!(refused_for_memory(&reply("OOM")));
        assert!(nothing_written(&reply("OOM")));
        assert!(nothing_written(&reply("READONLY")));
        assert!(!refused_for_memory(&reply("READONLY")));
        assert!(!nothing_written(&reply("ERR")));
        let timeout = RedisError::from((redis::ErrorKind::Io, "redis did not answer in time"));
        assert!(!nothing_written(&timeout));
        assert!(!refused_for_memory(&timeout));
    }
}
