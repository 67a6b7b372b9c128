//! What the broker tests of this crate share: a claim that must hold a message, the messages of
//! a batch of claims, a delivery's task id.
#![allow(dead_code)] // each test file uses its own subset

use celery_redis::broker::{Broker, Claim, Delivery};
use celery_redis::protocol::Envelope;

/// One claim from `broker`'s queue, which must hold a message.
pub async fn claim(broker: &Broker) -> Delivery {
    match broker.claim().await.unwrap() {
        Some(Claim::Message(d)) => d,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// The deliveries of `claims`, each of which must be a message.
pub fn held(claims: Vec<Claim>) -> Vec<Delivery> {
    claims
        .into_iter()
        .map(|c| match c {
            Claim::Message(d) => d,
            other => panic!("expected a message, got {other:?}"),
        })
        .collect()
}

/// The task id of a held delivery.
pub fn id_of(d: &Delivery) -> String {
    Envelope::from_json(d.raw.as_bytes()).unwrap().headers.id
}
