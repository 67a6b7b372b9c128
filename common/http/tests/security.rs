//! Redis credentials and TLS: an ACL user in REDIS_URL works, a wrong password is a 503 that
//! names no secret, and `rediss://` connects over TLS verified against a CA of the test's own.

use std::process::Command;

use http_kit::AppState;
use redis::AsyncCommands;
use testkit::{free_port, service_config, TestRedis};

const SECRET: &str = "s3cret-Pa55";

async fn readyz(url: &str) -> (u16, String) {
    let state = AppState::connect(&service_config(url), "test@host").unwrap();
    let routes = http_kit::health::readyz(state.redis.clone(), state.timeout)
        .recover(http_kit::rejection::recover);
    let resp = warp::test::request().path("/readyz").reply(&routes).await;
    (
        resp.status().as_u16(),
        String::from_utf8_lossy(resp.body()).into_owned(),
    )
}

use warp::Filter;

#[tokio::test]
async fn an_acl_user_in_the_url_works_and_a_wrong_password_leaks_nothing() {
    let password = format!(">{SECRET}");
    let redis = TestRedis::start_with(&[
        "--user", "app", "on", &password, "~*", "&*", "+@all", "--user", "default", "off",
    ]);
    let good = format!("redis://app:{SECRET}@127.0.0.1:{}/0", redis.port());
    assert_eq!(readyz(&good).await.0, 200);

    let bad = format!("redis://app:wrong-{SECRET}@127.0.0.1:{}/0", redis.port());
    let (status, body) = readyz(&bad).await;
    assert_eq!(status, 503);
    assert!(!body.contains(SECRET), "{body}");
    let err = celery_redis::conn::RedisUrl::parse(&bad)
        .unwrap()
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap_err();
    assert!(!err.to_string().contains(SECRET), "{err}");
}

fn openssl(dir: &std::path::Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test]
async fn rediss_urls_connect_over_verified_tls() {
    let dir = testkit::temp_dir("tls");
    let d = dir.path();
    let made = openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=test-ca",
        ],
    ) && openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    ) && std::fs::write(
        d.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .is_ok()
        && openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "1",
                "-extfile",
                "san.ext",
            ],
        );
    if !made {
        eprintln!("skipped: openssl is not available to make test certificates");
        return;
    }
    let tls_port = free_port();
    let p = |f: &str| d.join(f).to_string_lossy().into_owned();
    let redis = TestRedis::start_with(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &p("server.pem"),
        "--tls-key-file",
        &p("server.key"),
        "--tls-ca-cert-file",
        &p("ca.pem"),
        "--tls-auth-clients",
        "no",
    ]);
    redis
        .manager()
        .await
        .set::<_, _, ()>("over-tls", "yes")
        .await
        .unwrap();
    // rustls checks the server against the system roots; point them at this test's CA.
    std::env::set_var("SSL_CERT_FILE", p("ca.pem"));
    let url = format!("rediss://localhost:{tls_port}/0");
    let mut conn = celery_redis::conn::RedisUrl::parse(&url)
        .unwrap()
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let v: String = conn.get("over-tls").await.unwrap();
    assert_eq!(v, "yes");
    assert_eq!(readyz(&url).await.0, 200);
    // Plain text on the TLS port is refused: the URL scheme really selects TLS.
    assert_eq!(
        readyz(&format!("redis://localhost:{tls_port}/0")).await.0,
        503
    );
}

#[tokio::test]
async fn after_a_password_change_and_back_the_service_reconnects() {
    let password = format!(">{SECRET}");
    let redis = TestRedis::start_with(&[
        "--user", "app", "on", &password, "~*", "&*", "+@all", "--user", "default", "off",
    ]);
    let url = format!("redis://app:{SECRET}@127.0.0.1:{}/0", redis.port());
    let state = AppState::connect(&service_config(&url), "test@host").unwrap();
    let routes = http_kit::health::readyz(state.redis.clone(), state.timeout)
        .recover(http_kit::rejection::recover);
    let ready = || async {
        warp::test::request()
            .path("/readyz")
            .reply(&routes)
            .await
            .status()
            .as_u16()
    };
    assert_eq!(ready().await, 200);
    let mut admin = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let acl_conn = admin.clone();
    let acl = |pass: String| {
        let mut admin = acl_conn.clone();
        async move {
            redis::cmd("ACL")
                .arg("SETUSER")
                .arg("app")
                .arg("resetpass")
                .arg(pass)
                .query_async::<()>(&mut admin)
                .await
                .unwrap();
        }
    };
    // The password changes and every connection of the user is closed: the service cannot
    // authenticate any more.
    acl(">another-password".into()).await;
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg("app")
        .arg("SKIPME")
        .arg("yes")
        .query_async::<i64>(&mut admin)
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(ready().await, 503);
    }
    // Back to the configured password: the next requests succeed on a new connection.
    acl(password.clone()).await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(ready().await);
    }
    assert_eq!(answers.last(), Some(&200), "{answers:?}");
}
