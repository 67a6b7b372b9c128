//! Stock reservation against a real redis-server: all or nothing, once per order, never negative.

const RETAIN: std::time::Duration = std::time::Duration::from_secs(3600);

use shop::contracts::{OrderItem, OrderStatus};
use shop::inventory::{get_stock, set_stock, Inventory};
use testkit::TestRedis;

fn item(sku: &str, quantity: i64) -> OrderItem {
    OrderItem {
        sku: sku.into(),
        quantity,
        unit_price_cents: 100,
    }
}

#[tokio::test]
async fn a_confirmed_reservation_decrements_every_sku_once() {
    let redis = TestRedis::start();
    let conn = redis.manager().await;
    set_stock(&conn, "A", 10).await.unwrap();
    set_stock(&conn, "B", 1).await.unwrap();
    // The same SKU twice in one order counts as the sum.
    let items = [item("A", 3), item("B", 1), item("A", 2)];
    let r = Inventory::default()
        .reserve(&conn, "o-1", &items, RETAIN)
        .await
        .unwrap();
    assert_eq!(r.status, OrderStatus::Confirmed);
    assert_eq!(get_stock(&conn, "A").await.unwrap(), 5);
    assert_eq!(get_stock(&conn, "B").await.unwrap(), 0);

    let again = Inventory::default()
        .reserve(&conn, "o-1", &items, RETAIN)
        .await
        .unwrap();
    assert_eq!(again, r, "a redelivered order gets the first outcome");
    assert_eq!(
        get_stock(&conn, "A").await.unwrap(),
        5,
        "and reserves nothing more"
    );
}

#[tokio::test]
async fn insufficient_stock_rejects_the_whole_order_and_changes_nothing() {
    let redis = TestRedis::start();
    let conn = redis.manager().await;
    set_stock(&conn, "A", 10).await.unwrap();
    set_stock(&conn, "B", 1).await.unwrap();
    let r = Inventory::default()
        .reserve(&conn, "o-2", &[item("A", 3), item("B", 2)], RETAIN)
        .await
        .unwrap();
    assert_eq!(r.status, OrderStatus::Rejected);
    assert_eq!(
        r.reason.as_deref(),
        Some("insufficient stock for B: requested 2, available 1")
    );
    assert_eq!(get_stock(&conn, "A").await.unwrap(), 10);
    assert_eq!(get_stock(&conn, "B").await.unwrap(), 1);
    // Even after a restock, the order keeps its first outcome.
    set_stock(&conn, "B", 100).await.unwrap();
    assert_eq!(
        Inventory::default()
            .reserve(&conn, "o-2", &[item("A", 3), item("B", 2)], RETAIN)
            .await
            .unwrap(),
        r
    );
}

#[tokio::test]
async fn concurrent_orders_never_oversell() {
    let redis = TestRedis::start();
    let conn = redis.manager().await;
    set_stock(&conn, "A", 25).await.unwrap();
    // One inventory, as a worker has: reservations made together share script calls.
    let inventory = Inventory::default();
    let mut handles = Vec::new();
    for i in 0..40 {
        let (conn, inventory) = (conn.clone(), inventory.clone());
        handles.push(tokio::spawn(async move {
            inventory
                .reserve(&conn, &format!("o-{i}"), &[item("A", 1)], RETAIN)
                .await
                .unwrap()
        }));
    }
    let mut confirmed = 0;
    for h in handles {
        if h.await.unwrap().status == OrderStatus::Confirmed {
            confirmed += 1;
        }
    }
    assert_eq!(confirmed, 25);
    assert_eq!(get_stock(&conn, "A").await.unwrap(), 0);
}
