//! A process's node name, `rust<pid>-<boot id>@<host>`: what Celery writes as `origin` and as a
//! worker's `hostname`. Built once by each binary and passed down; nothing reads it globally.

/// A name unique per process start (a random boot id), so a restart or a replica with the same
/// host and pid is never mistaken for another.
pub fn unique() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let boot = uuid::Uuid::new_v4().simple().to_string();
    format!("rust{}-{}@{}", std::process::id(), &boot[..8], host)
}
