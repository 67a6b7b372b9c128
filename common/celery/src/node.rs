//! A process's node name: what Celery writes as `origin` and as a worker's `hostname`, and what
//! remote control addresses. Unique by default (`rust<pid>-<boot id>@<host>`), or set like
//! Celery's `-n` from a template. Built once by each binary and passed down.

use std::sync::OnceLock;

/// Longest node name accepted (it travels in every event and reply).
pub const MAX_NODE_NAME: usize = 200;

/// This process's id, read once: every STARTED result and every event carries it, and
/// `std::process::id()` is a system call each time (glibc does not cache it): one per task,
/// and one per task event. A process that forked after the first call would report its
/// parent's id, as the node name built at start does; none of this fleet's binaries fork.
pub fn pid() -> u32 {
    static PID: OnceLock<u32> = OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// This machine's host name (`localhost` when it cannot be read).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The host part of a node name `name@host` (the whole name when it has no `@`): the
/// `hostname` label of metrics, as celery-exporter makes it, so a restart (which gives the
/// default name a new boot id) keeps its series.
pub fn host_of(node: &str) -> &str {
    node.rsplit_once('@').map_or(node, |(_, host)| host)
}

/// A name unique per process start (a random boot id), so a restart or a replica with the same
/// host and pid is never mistaken for another.
pub fn unique() -> String {
    let boot = uuid::Uuid::new_v4().simple().to_string();
    format!("rust{}-{}@{}", pid(), &boot[..8], hostname())
}

/// Expands a node-name template as Celery's `-n` does: `%h` is the host name, `%n` its first
/// label, `%d` the rest (the domain), `%%` a percent sign; a name without `@` becomes
/// `celery@<name>`. The result must be 1 to [`MAX_NODE_NAME`] printable ASCII characters
/// without spaces.
pub fn from_template(template: &str, host: &str) -> Result<String, String> {
    let (label, domain) = host.split_once('.').unwrap_or((host, ""));
    let mut out = String::new();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => out.push_str(host),
            Some('n') => out.push_str(label),
            Some('d') => out.push_str(domain),
            Some('%') => out.push('%'),
            other => {
                return Err(format!(
                    "unknown placeholder %{} (use %h, %n, %d or %%)",
                    other.map(String::from).unwrap_or_default()
                ))
            }
        }
    }
    if !out.contains('@') {
        out = format!("celery@{out}");
    }
    if out.len() > MAX_NODE_NAME || !out.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "must expand to at most {MAX_NODE_NAME} printable ASCII characters without spaces"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_read_once_is_this_process_id() {
        assert_eq!(pid(), std::process::id());
        assert_eq!(pid(), std::process::id(), "the second read, from the cache");
        assert!(unique().starts_with(&format!("rust{}-", std::process::id())));
    }

    #[test]
    fn the_host_part_is_what_follows_the_last_at() {
        assert_eq!(host_of("rust12-ab34cd56@web-1"), "web-1");
        assert_eq!(host_of("a@b@c"), "c");
        assert_eq!(host_of("plain"), "plain");
        // Two starts of one worker on one host share their series.
        assert_eq!(host_of(&unique()), host_of(&unique()));
    }

    #[test]
    fn expands_like_celery() {
        assert_eq!(
            from_template("w1@%h", "box.example.com").unwrap(),
            "w1@box.example.com"
        );
        assert_eq!(from_template("w1@%n", "box.example.com").unwrap(), "w1@box");
        assert_eq!(
            from_template("%n.%d@x", "box.example.com").unwrap(),
            "box.example.com@x"
        );
        assert_eq!(from_template("w%%1@h", "b").unwrap(), "w%1@h");
        assert_eq!(from_template("worker1", "b").unwrap(), "celery@worker1");
        assert!(from_template("w@%x", "b").is_err());
        assert!(from_template("w@%", "b").is_err());
        assert!(from_template("a b@h", "b").is_err());
        assert!(from_template(&"x".repeat(300), "b").is_err());
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique(), unique());
    }
}
