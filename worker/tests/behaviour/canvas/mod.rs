//! Canvas: link callbacks, chains and chords sent on by a task (`callbacks`), and chords joined
//! on Celery's Redis keys (`chord`).

mod callbacks;
mod chord;
