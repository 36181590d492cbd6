//! One timer per connection for deadlines that come one after another: the
//! next request head's (`server.header_read_timeout`, through hyper's
//! [`Timer`]) and the upstream answer's (`server.upstream_timeout`).
//!
//! A tokio timer registered for every request and cancelled a moment later
//! costs two trips to the runtime's timer wheel (under its lock) per
//! request. An HTTP/1.1 connection has at most one such deadline running at
//! a time, and each is later than the one before, so a [`SharedTimer`]
//! keeps one tokio timer armed for an earlier deadline and moves it only
//! when it fires before the deadline now waited for: once per timeout
//! period at most, instead of twice per request. Each deadline still
//! resolves exactly when it is due, never before.
//!
//! A shared timer wakes the task that polled it last: it serves the
//! deadlines of one connection's task, never of two tasks at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant as StdInstant;

use hyper::rt::{Sleep as HyperSleep, Timer};
use tokio::time::{Instant, Sleep};

/// One connection's timer, lent to its deadlines in turn.
#[derive(Default)]
pub struct SharedTimer {
    /// Made on first use (it needs the runtime).
    slot: Mutex<Option<Pin<Box<Sleep>>>>,
}

impl std::fmt::Debug for SharedTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedTimer")
    }
}

impl SharedTimer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Ready once `due` has passed.
    pub fn poll_until(&self, due: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let timer = slot.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        // Armed later than `due` (a reload shortened the timeout): brought
        // forward, or this deadline would pass unnoticed.
        if timer.deadline() > due {
            timer.as_mut().reset(due);
        }
        loop {
            match timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if timer.deadline() >= due => return Poll::Ready(()),
                // It fired for an earlier deadline: armed for this one.
                Poll::Ready(()) => timer.as_mut().reset(due),
            }
        }
    }

    /// A future ready once `due` has passed.
    pub fn until(&self, due: Instant) -> Until<'_> {
        Until { timer: self, due }
    }
}

/// See [`SharedTimer::until`].
pub struct Until<'a> {
    timer: &'a SharedTimer,
    due: Instant,
}

impl Future for Until<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.timer.poll_until(self.due, cx)
    }
}

/// hyper's timer for one HTTP/1.1 server connection, whose only use of it
/// is the header read timeout: each head's deadline on the connection's
/// [`SharedTimer`]. (HTTP/2 connections keep hyper-util's `TokioTimer`:
/// their pings and streams hold several timers at once.)
#[derive(Clone, Default)]
pub struct ConnectionTimer {
    shared: Arc<SharedTimer>,
}

impl ConnectionTimer {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Timer for ConnectionTimer {
    fn sleep(&self, duration: std::time::Duration) -> Pin<Box<dyn HyperSleep>> {
        Box::pin(Deadline {
            shared: self.shared.clone(),
            due: Instant::now() + duration,
        })
    }

    fn sleep_until(&self, deadline: StdInstant) -> Pin<Box<dyn HyperSleep>> {
        Box::pin(Deadline {
            shared: self.shared.clone(),
            due: Instant::from_std(deadline),
        })
    }

    /// The runtime's clock (paused in tests), as hyper-util's timer does.
    fn now(&self) -> StdInstant {
        Instant::now().into_std()
    }
}

/// One deadline on a connection's shared timer.
struct Deadline {
    shared: Arc<SharedTimer>,
    due: Instant,
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.shared.poll_until(self.due, cx)
    }
}

impl HyperSleep for Deadline {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Deadlines one after another on one timer: each resolves when due,
    /// not before (paused time, so exactly), whatever the timer was armed
    /// for last.
    #[tokio::test(start_paused = true)]
    async fn each_deadline_resolves_when_due_and_not_before() {
        let timer = SharedTimer::new();
        let start = Instant::now();
        // Armed for 300 ms; a later deadline waited for past it.
        let first = start + Duration::from_millis(300);
        let second = start + Duration::from_millis(450);
        let quick = tokio::time::timeout(Duration::from_millis(10), timer.until(first)).await;
        assert!(quick.is_err(), "not due yet");
        timer.until(second).await;
        assert_eq!(Instant::now() - start, Duration::from_millis(450));
        // A deadline already passed resolves at once.
        timer.until(first).await;
        assert_eq!(Instant::now() - start, Duration::from_millis(450));
        // Armed for a later time than an earlier deadline (a shortened
        // timeout): brought forward.
        let far = Instant::now() + Duration::from_secs(30);
        let _ = tokio::time::timeout(Duration::from_millis(1), timer.until(far)).await;
        let near = Instant::now() + Duration::from_millis(100);
        let before = Instant::now();
        timer.until(near).await;
        assert_eq!(Instant::now() - before, Duration::from_millis(100));
    }

    /// hyper's side: `sleep_until` deadlines on one connection timer.
    #[tokio::test(start_paused = true)]
    async fn the_hyper_timer_resolves_at_each_deadline() {
        let timer = ConnectionTimer::new();
        let start = timer.now();
        timer
            .sleep_until(start + Duration::from_millis(200))
            .as_mut()
            .await;
        assert_eq!(timer.now() - start, Duration::from_millis(200));
        let second = timer.sleep(Duration::from_millis(50));
        second.await;
        assert_eq!(timer.now() - start, Duration::from_millis(250));
    }
}
