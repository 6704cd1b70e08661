//! Ctrl-C and SIGTERM, as the engine sees them.
//!
//! The command line raises the level; the engine and the SSH layer watch it. Level 1 (the
//! first signal): start nothing new, let running remote steps finish within
//! [`GRACE`], then clean up. Level 2 (a second signal): kill what runs on the hosts now,
//! clean up, and stop. Libraries never install signal handlers themselves.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long running steps may go on after the first signal before they are killed.
pub const GRACE: Duration = Duration::from_secs(60);

/// A shared interrupt level: 0 running, 1 finishing, 2 aborting.
#[derive(Clone)]
pub struct Interrupt {
    tx: Arc<watch::Sender<u8>>,
}

impl Default for Interrupt {
    fn default() -> Self {
        Interrupt {
            tx: Arc::new(watch::channel(0).0),
        }
    }
}

impl fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Interrupt({})", self.level())
    }
}

impl Interrupt {
    pub fn new() -> Self {
        Self::default()
    }

    /// 0: running; 1: finish what runs, start nothing new; 2: abort now.
    pub fn level(&self) -> u8 {
        *self.tx.borrow()
    }

    /// One more signal: 0 → 1 → 2. Returns the new level.
    pub fn raise(&self) -> u8 {
        let mut lvl = 0;
        self.tx.send_modify(|l| {
            *l = (*l + 1).min(2);
            lvl = *l;
        });
        lvl
    }

    /// Resolves when the level reaches at least `level` (at once if it already has).
    pub async fn reached(&self, level: u8) {
        let mut rx = self.tx.subscribe();
        // `wait_for` only fails when the sender is gone, and `self` holds it.
        let _ = rx.wait_for(|l| *l >= level).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn levels_climb_and_stop_at_two() {
        let i = Interrupt::new();
        assert_eq!(i.level(), 0);
        let waiter = {
            let i = i.clone();
            tokio::spawn(async move { i.reached(2).await })
        };
        assert_eq!(i.raise(), 1);
        assert!(!waiter.is_finished());
        assert_eq!(i.raise(), 2);
        assert_eq!(i.raise(), 2);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter wakes at level 2")
            .expect("joins");
    }
}
