//! `GET /notifications?recipient=`: a bounded page (a `limit` with a default and a maximum, and
//! about 256 KiB of records) and a `next_cursor` that continues without a gap or a repeat while
//! new deliveries arrive; bad `limit` and `cursor` values are 422s naming the field.

use std::time::Duration;

use http_kit::AppState;
use serde_json::Value;
use service_notification::api;
use shop::contracts::Channel;
use shop::notifications::{self, Delivery, PAGE_BYTES, PAGE_DEFAULT, PAGE_MAX};
use testkit::{service_config, TestRedis};

const RETAIN: Duration = Duration::from_secs(3600);
const WHO: &str = "ada@example.com";

struct Fixture {
    _redis: TestRedis,
    state: AppState,
}

impl Fixture {
    fn new() -> Self {
        let redis = TestRedis::start();
        let state = AppState::connect(&service_config(&redis.url()), "test@host").unwrap();
        Fixture {
            _redis: redis,
            state,
        }
    }

    async fn record(&self, range: std::ops::Range<usize>, body: &str) {
        for n in range {
            let d = Delivery {
                notification_id: format!("n-{n}"),
                recipient: WHO.into(),
                channel: Channel::Log,
                subject: "s".into(),
                body: body.into(),
                url: None,
                task_id: format!("t-{n}"),
                delivered_at: "2026-01-01T00:00:00.000000+00:00".into(),
            };
            assert!(notifications::record(&self.state.redis, &d, RETAIN)
                .await
                .unwrap());
        }
    }

    /// The page at `query` (after `recipient=`): status, body, body size.
    async fn page(&self, query: &str) -> (u16, Value, usize) {
        let resp = warp::test::request()
            .path(&format!("/notifications?recipient={WHO}{query}"))
            .reply(&api::routes(self.state.clone()))
            .await;
        let body = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
        (resp.status().as_u16(), body, resp.body().len())
    }
}

fn numbers(page: &Value) -> Vec<usize> {
    page["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["notification_id"].as_str().unwrap()[2..].parse().unwrap())
        .collect()
}

fn cursor(page: &Value) -> Option<String> {
    page["next_cursor"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn pages_follow_the_cursor_without_a_gap_or_a_repeat_while_new_deliveries_arrive() {
    let f = Fixture::new();
    f.record(0..25, "b").await;
    let (status, first, _) = f.page("&limit=10").await;
    assert_eq!(status, 200);
    assert_eq!(numbers(&first), (15..25).rev().collect::<Vec<_>>());
    // New deliveries go to the head of the list: the next page is still the one after.
    f.record(25..28, "b").await;
    let next = cursor(&first).expect("a next page");
    let (_, second, _) = f.page(&format!("&limit=10&cursor={next}")).await;
    assert_eq!(numbers(&second), (5..15).rev().collect::<Vec<_>>());
    f.record(28..29, "b").await;
    let next = cursor(&second).expect("a next page");
    let (_, last, _) = f.page(&format!("&limit=10&cursor={next}")).await;
    assert_eq!(numbers(&last), (0..5).rev().collect::<Vec<_>>());
    assert_eq!(last["next_cursor"], Value::Null);
    // Without a limit: the default, from the newest.
    let (_, newest, _) = f.page("").await;
    assert_eq!(
        numbers(&newest),
        (29 - PAGE_DEFAULT..29).rev().collect::<Vec<_>>()
    );
    assert!(cursor(&newest).is_some());
}

#[tokio::test]
async fn a_page_is_bounded_in_bytes_and_the_rest_follows() {
    let f = Fixture::new();
    let body = "x".repeat(16 * 1024);
    f.record(0..40, &body).await;
    let mut seen = Vec::new();
    let mut query = format!("&limit={PAGE_MAX}");
    loop {
        let (status, page, size) = f.page(&query).await;
        assert_eq!(status, 200);
        assert!(size <= PAGE_BYTES + 1024, "a page of {size} bytes");
        assert!(!numbers(&page).is_empty());
        seen.extend(numbers(&page));
        match cursor(&page) {
            Some(next) => query = format!("&limit={PAGE_MAX}&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen, (0..40).rev().collect::<Vec<_>>());
}

#[tokio::test]
async fn bad_limits_and_cursors_are_422_naming_the_field() {
    let f = Fixture::new();
    f.record(0..3, "b").await;
    for (query, field) in [
        ("&limit=0", "limit"),
        ("&limit=101", "limit"),
        ("&limit=ten", "limit"),
        ("&limit=", "limit"),
        ("&limit=-1", "limit"),
        ("&cursor=abc", "cursor"),
        ("&cursor=-1", "cursor"),
        ("&cursor=", "cursor"),
        ("&cursor=12345678901234567", "cursor"),
    ] {
        let (status, reply, _) = f.page(query).await;
        assert_eq!(status, 422, "{query}: {reply}");
        assert_eq!(
            reply["error"]["fields"][0]["field"], field,
            "{query}: {reply}"
        );
    }
    // A cursor the list never had ends the listing.
    let (status, past, _) = f.page("&cursor=9999999999999999").await;
    assert_eq!((status, numbers(&past).len()), (200, 0));
    assert_eq!(past["next_cursor"], Value::Null);
    let (status, all, _) = f.page(&format!("&limit={PAGE_MAX}")).await;
    assert_eq!((status, numbers(&all)), (200, vec![2, 1, 0]));
    assert_eq!(all["next_cursor"], Value::Null);
}
