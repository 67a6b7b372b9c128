//! Tasks as they run: the task API a user's task meets (`api`), the shop's two tasks and the
//! orders they carry (`orders`), and notification webhooks (`webhooks`).

mod api;
mod orders;
mod webhooks;
