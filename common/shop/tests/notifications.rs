//! The per-recipient listing against a real redis-server: pages follow their cursor without a
//! gap or a repeat while deliveries are pushed at the head of the list, also when the list is at
//! its cap and loses its oldest entries, for lists written before the push count existed, and
//! past records that expired.

use std::time::Duration;

use redis::AsyncCommands;
use shop::contracts::Channel;
use shop::keys;
use shop::notifications::{self, Delivery, Page, RECIPIENT_KEEP};
use testkit::TestRedis;

const RETAIN: Duration = Duration::from_secs(3600);
const WHO: &str = "ada@example.com";

fn delivery(n: usize) -> Delivery {
    Delivery {
        notification_id: format!("n-{n}"),
        recipient: WHO.into(),
        channel: Channel::Log,
        subject: "s".into(),
        body: format!("body {n}"),
        url: None,
        task_id: format!("t-{n}"),
        delivered_at: "2026-01-01T00:00:00.000000+00:00".into(),
    }
}

async fn record(conn: &celery_redis::conn::Conn, range: std::ops::Range<usize>) {
    for n in range {
        assert!(notifications::record(conn, &delivery(n), RETAIN)
            .await
            .unwrap());
    }
}

fn numbers(page: &Page) -> Vec<usize> {
    page.deliveries
        .iter()
        .map(|d| d.notification_id[2..].parse().unwrap())
        .collect()
}

/// Every page from `cursor` to the end, `limit` at a time.
async fn follow(
    conn: &celery_redis::conn::Conn,
    mut cursor: Option<u64>,
    limit: usize,
) -> Vec<usize> {
    let mut all = Vec::new();
    loop {
        let page = notifications::page(conn, WHO, cursor, limit).await.unwrap();
        all.extend(numbers(&page));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
}

#[tokio::test]
async fn at_the_cap_the_cursor_still_continues_exactly_where_the_page_ended() {
    let redis = TestRedis::start();
    let conn = redis.manager().await;
    let keep = usize::try_from(RECIPIENT_KEEP).unwrap();
    record(&conn, 0..keep).await;
    let first = notifications::page(&conn, WHO, None, 100).await.unwrap();
    assert_eq!(
        numbers(&first),
        (keep - 100..keep).rev().collect::<Vec<_>>()
    );
    // 50 new deliveries at the head push the 50 oldest out of the list.
    record(&conn, keep..keep + 50).await;
    let rest = follow(&conn, first.next, 100).await;
    assert_eq!(rest, (50..keep - 100).rev().collect::<Vec<_>>());
    // The push count lives as long as the list.
    let ttl: i64 = conn.clone().ttl(keys::recipient_pushed(WHO)).await.unwrap();
    assert!((1..=3600).contains(&ttl), "{ttl}");
}

#[tokio::test]
async fn a_list_written_before_the_push_count_pages_the_same() {
    let redis = TestRedis::start();
    let conn = redis.manager().await;
    let mut c = conn.clone();
    // As the record script wrote it before: records and ids, no count.
    for n in 0..30 {
        let d = delivery(n);
        let _: () = c
            .set(
                keys::notification_delivery(&d.notification_id),
                serde_json::to_string(&d).unwrap(),
            )
            .await
            .unwrap();
        let _: () = c
            .lpush(keys::recipient_deliveries(WHO), &d.notification_id)
            .await
            .unwrap();
    }
    let first = notifications::page(&conn, WHO, None, 10).await.unwrap();
    assert_eq!(numbers(&first), (20..30).rev().collect::<Vec<_>>());
    record(&conn, 30..33).await;
    assert_eq!(
        follow(&conn, first.next, 7).await,
        (0..20).rev().collect::<Vec<_>>()
    );
    assert_eq!(
        follow(&conn, None, 100).await,
        (0..33).rev().collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn expired_records_are_passed_over_and_a_stale_cursor_ends_the_listing() {
    let redis = TestRedis::start();
    let conn = redis.manager().await;
    record(&conn, 0..12).await;
    let mut c = conn.clone();
    for n in [3, 4, 10] {
        let _: () = c
            .del(keys::notification_delivery(&format!("n-{n}")))
            .await
            .unwrap();
    }
    assert_eq!(
        follow(&conn, None, 4).await,
        vec![11, 9, 8, 7, 6, 5, 2, 1, 0]
    );
    // A cursor the list never had (e.g. one from a list that has expired since).
    let past = notifications::page(&conn, WHO, Some(1_000_000), 10)
        .await
        .unwrap();
    assert_eq!(past, Page::default());
    let none = notifications::page(&conn, "nobody@example.com", None, 10)
        .await
        .unwrap();
    assert_eq!(none, Page::default());
}
