//! Routing: queues and task routes (`queues`), hostile queue names, routes and keys in place of
//! a queue's lists (`hostile_keys`), and a fleet's key layout (`layout`).

mod hostile_keys;
mod layout;
mod queues;
