//! A watchdog for stalls: moments when this node's async runtime, or the whole process, did not
//! run for longer than a Raft heartbeat should ever wait.
//!
//! Every Raft group's event loop, every heartbeat and every HTTP request runs on the tokio
//! runtime; a task that blocks a worker thread (a disk call outside the blocking pool, a long
//! computation) silences them all, and followers elect new leaders. Such stalls are invisible in
//! the logs — nothing is logged *during* them — so two tickers measure them: one a tokio task,
//! one an OS thread. A late tokio tick with a punctual thread means the runtime's workers were
//! blocked; both late means the process was not scheduled (CPU starvation, memory pressure, a
//! SIGSTOP). Each stall is logged as a warning and recorded in `tessera_stall_seconds{where}`.

use std::time::{Duration, Instant};

/// How often each ticker wakes.
const TICK: Duration = Duration::from_millis(100);
/// Lateness worth a warning: a fifth of the shortest election timeout.
const REPORT: Duration = Duration::from_millis(500);

/// Starts both tickers; they run for the life of the process.
pub fn spawn() {
    tokio::spawn(async {
        let mut ticker = Ticker::new(Instant::now());
        loop {
            tokio::time::sleep(TICK).await;
            ticker.report("runtime", Instant::now());
        }
    });
    let thread = std::thread::Builder::new()
        .name("stall-watchdog".into())
        .spawn(|| {
            let mut ticker = Ticker::new(Instant::now());
            loop {
                std::thread::sleep(TICK);
                ticker.report("process", Instant::now());
            }
        });
    if let Err(e) = thread {
        tracing::warn!(error = %e, "the process stall watchdog did not start");
    }
}

/// One ticker's last wake-up.
struct Ticker {
    last: Instant,
}

impl Ticker {
    fn new(now: Instant) -> Ticker {
        Ticker { last: now }
    }

    /// How much later than one `TICK` after the last wake-up `now` is, if that is a stall.
    fn stall(&mut self, now: Instant) -> Option<Duration> {
        let late = now
            .saturating_duration_since(self.last)
            .saturating_sub(TICK);
        self.last = now;
        (late >= REPORT).then_some(late)
    }

    /// Logs and records a stall seen at `now`, if there was one.
    fn report(&mut self, place: &'static str, now: Instant) {
        if let Some(late) = self.stall(now) {
            tracing::warn!(
                r#where = place,
                late_ms = late.as_millis() as u64,
                "stalled: nothing ran here for this long"
            );
            metrics::histogram!("tessera_stall_seconds", "where" => place)
                .record(late.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_wake_up_late_by_half_a_second_or_more_is_a_stall() {
        let start = Instant::now();
        let mut ticker = Ticker::new(start);
        let on_time = start + TICK + Duration::from_millis(30);
        assert_eq!(ticker.stall(on_time), None);
        let stalled = on_time + TICK + Duration::from_millis(700);
        assert_eq!(ticker.stall(stalled), Some(Duration::from_millis(700)));
        // Measured from the last wake-up, so one stall is reported once.
        assert_eq!(ticker.stall(stalled + TICK), None);
    }
}
