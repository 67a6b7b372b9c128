//! The variables of Redis Sentinel and replication: the master name of a `sentinel://` URL
//! (kombu's `master_name` transport option) and the opt-in `WAIT` after the writes that matter.

use std::time::Duration;

use crate::conn::{self, RedisUrl, Wait};
use envconf::{number, raw, ConfigError, Source};

/// Variables read here (by every process, through `RedisConfig`).
pub const SENTINEL_VARIABLES: &[&str] = &[
    "REDIS_SENTINEL_MASTER",
    "RESULT_BACKEND_SENTINEL_MASTER",
    "REDIS_WAIT_REPLICAS",
    "REDIS_WAIT_TIMEOUT_MS",
];

/// Most replicas `REDIS_WAIT_REPLICAS` may ask for.
pub const MAX_WAIT_REPLICAS: u64 = 16;

/// The master name for the URL in `var`: `REDIS_SENTINEL_MASTER` for the broker;
/// `RESULT_BACKEND_SENTINEL_MASTER`, else the broker's, for the result backend.
fn master(src: &dyn Source, var: &'static str) -> Result<(&'static str, String), ConfigError> {
    let mut name = None;
    if var == "RESULT_BACKEND_URL" {
        name = raw(src, "RESULT_BACKEND_SENTINEL_MASTER")?
            .map(|m| ("RESULT_BACKEND_SENTINEL_MASTER", m));
    }
    let name = match name {
        Some(n) => n,
        None => match raw(src, "REDIS_SENTINEL_MASTER")? {
            Some(m) => ("REDIS_SENTINEL_MASTER", m),
            None => {
                return Err(ConfigError {
                    var: "REDIS_SENTINEL_MASTER",
                    reason: format!("is required: {var} is a sentinel:// URL, and the sentinels are asked for the master by name"),
                })
            }
        },
    };
    if !conn::is_master_name(name.1.trim()) {
        return Err(ConfigError {
            var: name.0,
            reason: "must be 1-128 printable characters without spaces".into(),
        });
    }
    Ok((name.0, name.1.trim().to_owned()))
}

/// `raw`, a `sentinel://` URL list in `var`, with its master name.
pub(super) fn url(src: &dyn Source, var: &'static str, raw: &str) -> Result<RedisUrl, ConfigError> {
    let parsed = conn::parse_url(raw).map_err(|reason| ConfigError { var, reason })?;
    let (_, master) = master(src, var)?;
    RedisUrl::sentinel(parsed, master).map_err(|e| ConfigError {
        var,
        reason: format!("not a usable sentinel URL ({})", e.category()),
    })
}

/// Both URLs with the `WAIT` policy of `REDIS_WAIT_REPLICAS`/`REDIS_WAIT_TIMEOUT_MS`; refuses
/// a master name set when neither URL is a `sentinel://` one (a deployment believed to fail
/// over that would not).
pub(super) fn with_wait(
    src: &dyn Source,
    url: RedisUrl,
    result_url: RedisUrl,
) -> Result<(RedisUrl, RedisUrl), ConfigError> {
    let on_sentinels = url.topology().sentinels().is_some();
    for var in ["REDIS_SENTINEL_MASTER", "RESULT_BACKEND_SENTINEL_MASTER"] {
        let used = on_sentinels || result_url.topology().sentinels().is_some();
        if raw(src, var)?.is_some() && !used {
            return Err(ConfigError {
                var,
                reason: "is set, but neither REDIS_URL nor RESULT_BACKEND_URL is a sentinel:// URL"
                    .into(),
            });
        }
    }
    // Unset, a `sentinel://` URL waits for one replica (a failover without it loses accepted
    // writes: docs/reliability.md) and a plain URL for none; a value set applies to both.
    let replicas = match raw(src, "REDIS_WAIT_REPLICAS")? {
        Some(_) => Some(number(
            src,
            "REDIS_WAIT_REPLICAS",
            0,
            (0, MAX_WAIT_REPLICAS),
        )?),
        None => None,
    };
    let timeout = Duration::from_millis(number(src, "REDIS_WAIT_TIMEOUT_MS", 500, (1, 60_000))?);
    let wait = |url: &RedisUrl| Wait {
        replicas: replicas.unwrap_or(u64::from(url.topology().sentinels().is_some())),
        timeout,
    };
    let (for_url, for_results) = (wait(&url), wait(&result_url));
    Ok((url.with_wait(for_url), result_url.with_wait(for_results)))
}

#[cfg(test)]
mod tests {
    use super::super::RedisConfig;
    use super::*;
    use testkit::vars as src;

    #[test]
    fn every_variable_is_documented() {
        testkit::docs::assert_documented(
            SENTINEL_VARIABLES,
            &[
                "worker/.env.example",
                "service-order/.env.example",
                "service-notification/.env.example",
            ],
        );
        // It also names the URL variables it is given (read in config.rs).
        let names = [SENTINEL_VARIABLES, &["REDIS_URL", "RESULT_BACKEND_URL"]].concat();
        testkit::docs::assert_reads_only(include_str!("sentinel.rs"), &names);
    }

    fn sentinels(url: &RedisUrl) -> (Vec<(String, u16)>, String) {
        let s = url.topology().sentinels().expect("a sentinel URL");
        (s.addrs.clone(), s.master.clone())
    }

    #[test]
    fn kombus_form_with_several_sentinels_password_and_db() {
        let c = RedisConfig::from_source(&src(&[
            (
                "REDIS_URL",
                "sentinel://:s3cr%40t@10.0.0.1:26380/3;sentinel://h2;sentinel://[::1]:26381",
            ),
            ("REDIS_SENTINEL_MASTER", "mymaster"),
        ]))
        .unwrap();
        let (addrs, master) = sentinels(&c.url);
        assert_eq!(master, "mymaster");
        assert_eq!(
            addrs,
            [
                ("10.0.0.1".to_owned(), 26380),
                ("h2".to_owned(), 26379),
                ("::1".to_owned(), 26381)
            ]
        );
        let info = c.url.client().get_connection_info();
        assert_eq!(info.redis_settings().db(), 3);
        assert_eq!(info.redis_settings().password(), Some("s3cr@t"));
        assert_eq!(c.url.db(), 3);
        // The result backend defaults to the same URL, master and all.
        assert!(c.results_in_broker_db());
        assert_eq!(sentinels(&c.result_url).1, "mymaster");
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(
            shown.contains("sentinel:***@10.0.0.1:26380,h2:26379,::1:26381/3 (master mymaster)"),
            "{shown}"
        );
        // Unset, a sentinel URL waits for one replica: a failover loses nothing accepted.
        assert_eq!(
            c.url.topology().wait(),
            Wait {
                replicas: 1,
                timeout: Duration::from_millis(500)
            }
        );
    }

    #[test]
    fn wait_defaults_to_one_replica_on_sentinel_urls_only_and_zero_opts_out() {
        let mixed = [
            ("REDIS_URL", "sentinel://h:1/0"),
            ("REDIS_SENTINEL_MASTER", "m"),
            ("RESULT_BACKEND_URL", "redis://h:2/1"),
        ];
        let c = RedisConfig::from_source(&src(&mixed)).unwrap();
        assert_eq!(c.url.topology().wait().replicas, 1);
        // A plain Redis (maybe without replicas) is never made to wait by default.
        assert_eq!(c.result_url.topology().wait().replicas, 0);
        let plain = RedisConfig::from_source(&src(&[])).unwrap();
        assert_eq!(plain.url.topology().wait().replicas, 0);
        let off = [&mixed[..], &[("REDIS_WAIT_REPLICAS", "0")]].concat();
        let c = RedisConfig::from_source(&src(&off)).unwrap();
        assert_eq!(c.url.topology().wait().replicas, 0);
    }

    #[test]
    fn the_result_backend_may_name_another_master() {
        let c = RedisConfig::from_source(&src(&[
            ("REDIS_URL", "sentinel://h:1/0"),
            ("RESULT_BACKEND_URL", "sentinel://h:1/1"),
            ("REDIS_SENTINEL_MASTER", "broker"),
            ("RESULT_BACKEND_SENTINEL_MASTER", "results"),
            ("REDIS_WAIT_REPLICAS", "1"),
            ("REDIS_WAIT_TIMEOUT_MS", "250"),
        ]))
        .unwrap();
        assert_eq!(sentinels(&c.url).1, "broker");
        assert_eq!(sentinels(&c.result_url).1, "results");
        assert!(!c.results_in_broker_db());
        let wait = Wait {
            replicas: 1,
            timeout: Duration::from_millis(250),
        };
        assert_eq!(c.url.topology().wait(), wait);
        // A plain Redis URL takes the WAIT policy too (replicas without sentinels).
        let c = RedisConfig::from_source(&src(&[("REDIS_WAIT_REPLICAS", "2")])).unwrap();
        assert_eq!(c.url.topology().wait().replicas, 2);
        assert!(c.url.topology().sentinels().is_none());
    }

    #[test]
    fn bad_sentinel_settings_name_their_variable_and_never_show_the_password() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("REDIS_URL", "sentinel://:pw-s3cret@h:1")],
                "REDIS_SENTINEL_MASTER",
            ),
            (
                &[("RESULT_BACKEND_URL", "sentinel://:pw-s3cret@h:1")],
                "REDIS_SENTINEL_MASTER",
            ),
            (
                &[
                    ("REDIS_URL", "sentinel://h:1"),
                    ("REDIS_SENTINEL_MASTER", "a b"),
                ],
                "REDIS_SENTINEL_MASTER",
            ),
            (
                &[
                    ("REDIS_URL", "sentinel://h:1"),
                    ("REDIS_SENTINEL_MASTER", &"m".repeat(129)),
                ],
                "REDIS_SENTINEL_MASTER",
            ),
            (
                &[
                    ("RESULT_BACKEND_URL", "sentinel://h:1"),
                    ("REDIS_SENTINEL_MASTER", "m"),
                    ("RESULT_BACKEND_SENTINEL_MASTER", "x\ty"),
                ],
                "RESULT_BACKEND_SENTINEL_MASTER",
            ),
            (&[("REDIS_SENTINEL_MASTER", "m")], "REDIS_SENTINEL_MASTER"),
            (
                &[("RESULT_BACKEND_SENTINEL_MASTER", "m")],
                "RESULT_BACKEND_SENTINEL_MASTER",
            ),
            (
                &[
                    ("REDIS_URL", "sentinel://:pw-s3cret@h:0"),
                    ("REDIS_SENTINEL_MASTER", "m"),
                ],
                "REDIS_URL",
            ),
            (
                &[
                    ("REDIS_URL", "sentinel://:pw-s3cret@h:70000"),
                    ("REDIS_SENTINEL_MASTER", "m"),
                ],
                "REDIS_URL",
            ),
            (
                &[
                    ("REDIS_URL", "sentinel://:pw-s3cret@h:1/x"),
                    ("REDIS_SENTINEL_MASTER", "m"),
                ],
                "REDIS_URL",
            ),
            (
                &[
                    ("REDIS_URL", "sentinel://:pw-s3cret@h:1/-1"),
                    ("REDIS_SENTINEL_MASTER", "m"),
                ],
                "REDIS_URL",
            ),
            (
                &[
                    ("REDIS_URL", "sentinel://:pw-s3cret@:1"),
                    ("REDIS_SENTINEL_MASTER", "m"),
                ],
                "REDIS_URL",
            ),
            (
                &[
                    ("REDIS_URL", "sentinel://:pw-s3cret@h:1;"),
                    ("REDIS_SENTINEL_MASTER", "m"),
                ],
                "REDIS_URL",
            ),
            (
                &[
                    ("REDIS_URL", "sentinel://:pw-s3cret@h:1;redis://h:2"),
                    ("REDIS_SENTINEL_MASTER", "m"),
                ],
                "REDIS_URL",
            ),
            (
                &[
                    (
                        "REDIS_URL",
                        "sentinel://:pw-s3cret@h:1;sentinel://:other@h:2",
                    ),
                    ("REDIS_SENTINEL_MASTER", "m"),
                ],
                "REDIS_URL",
            ),
            (
                &[
                    ("REDIS_URL", "sentinel://:pw-s3cret@h:1/0;sentinel://h:2/1"),
                    ("REDIS_SENTINEL_MASTER", "m"),
                ],
                "REDIS_URL",
            ),
            (
                &[
                    ("REDIS_URL", "sentinel://:pw-s3cret@h:1?ssl=1"),
                    ("REDIS_SENTINEL_MASTER", "m"),
                ],
                "REDIS_URL",
            ),
            (
                &[
                    ("REDIS_URL", "sentinel://:pw-s3cr%zzet@h:1"),
                    ("REDIS_SENTINEL_MASTER", "m"),
                ],
                "REDIS_URL",
            ),
            (
                &[
                    ("REDIS_URL", "sentinel://:pw-s3cret@h x:1"),
                    ("REDIS_SENTINEL_MASTER", "m"),
                ],
                "REDIS_URL",
            ),
            (
                &[
                    ("REDIS_URL", "sentinel://:pw-s3cret@[::1:1"),
                    ("REDIS_SENTINEL_MASTER", "m"),
                ],
                "REDIS_URL",
            ),
            (
                &[
                    ("REDIS_URL", &"sentinel://:pw-s3cret@h:1;".repeat(17)),
                    ("REDIS_SENTINEL_MASTER", "m"),
                ],
                "REDIS_URL",
            ),
            (
                &[
                    ("RESULT_BACKEND_URL", "sentinel://:pw-s3cret@h:1;;"),
                    ("REDIS_SENTINEL_MASTER", "m"),
                ],
                "RESULT_BACKEND_URL",
            ),
            (&[("REDIS_WAIT_REPLICAS", "17")], "REDIS_WAIT_REPLICAS"),
            (&[("REDIS_WAIT_REPLICAS", "-1")], "REDIS_WAIT_REPLICAS"),
            (&[("REDIS_WAIT_TIMEOUT_MS", "0")], "REDIS_WAIT_TIMEOUT_MS"),
            (
                &[("REDIS_WAIT_TIMEOUT_MS", "60001")],
                "REDIS_WAIT_TIMEOUT_MS",
            ),
            (&[("REDIS_SENTINEL_MASTER", " ")], "REDIS_SENTINEL_MASTER"),
        ];
        for (vars, var) in cases {
            let err = RedisConfig::from_source(&src(vars)).unwrap_err();
            assert_eq!(err.var, *var, "{vars:?}: {err}");
            assert!(!err.to_string().contains("s3cr"), "{err}");
        }
    }

    #[test]
    fn sentinel_urls_are_told_apart() {
        assert!(conn::is_url("sentinel://h:1"));
        assert!(conn::is_url("SENTINEL://h:1;sentinel://h:2"));
        assert!(!conn::is_url("redis://sentinel:1"));
        assert!(!conn::is_url("sentinel:/h"));
        let a = RedisConfig::from_source(&src(&[
            ("REDIS_URL", "sentinel://h:1"),
            ("RESULT_BACKEND_URL", "sentinel://h:1"),
            ("REDIS_SENTINEL_MASTER", "a"),
            ("RESULT_BACKEND_SENTINEL_MASTER", "b"),
        ]))
        .unwrap();
        assert!(
            !a.results_in_broker_db(),
            "another master is another database"
        );
        let plain = RedisUrl::parse("redis://h:1/0").unwrap();
        assert!(
            !plain.same_database(&a.url),
            "a sentinel URL is not the Redis at its address"
        );
    }
}
