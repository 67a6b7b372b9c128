//! Remote control as Celery's and Flower's commands use it (`commands`) and hostile control
//! traffic, revokes and replies (`hostile`).

mod commands;
mod hostile;
