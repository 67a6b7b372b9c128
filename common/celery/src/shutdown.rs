//! One shutdown signal, fired by SIGTERM/SIGINT (or a test) and passed down to every loop.

use tokio::sync::watch;

/// Fires the shutdown.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// A handle every task holds to learn that shutdown has begun.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new shutdown signal: the trigger that fires it, and a handle to clone for every loop.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Begins the shutdown: every handle sees it; firing again does nothing more.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Whether shutdown has begun.
    pub fn is_fired(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has begun (at once if it already has).
    pub async fn wait(&mut self) {
        // An error means the trigger is gone, which also means: stop.
        let _ = self.0.wait_for(|fired| *fired).await;
    }
}

/// A shutdown that fires when either `a` or `b` does.
pub fn either(mut a: Shutdown, mut b: Shutdown) -> Shutdown {
    let (trigger, shutdown) = channel();
    tokio::spawn(async move {
        tokio::select! {
            _ = a.wait() => {}
            _ = b.wait() => {}
        }
        trigger.fire();
    });
    shutdown
}

/// A shutdown fired by the first SIGTERM or SIGINT.
pub fn on_signals() -> Shutdown {
    let (trigger, shutdown) = channel();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => log::info!("SIGINT received, shutting down"),
                        _ = term.recv() => log::info!("SIGTERM received, shutting down"),
                    }
                }
                Err(e) => {
                    log::warn!("cannot listen for SIGTERM ({e}); only SIGINT stops this process");
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        trigger.fire();
    });
    shutdown
}
