//! Every operation the load performed — what, against which node, when it started and ended,
//! and whether it took effect (`Ok`), certainly did not (`Fail`) or may have (`Info`, for
//! timeouts and broken connections) — and what the nemesis did when.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Outcome {
    Ok,
    Fail,
    Info,
}

/// What an operation did and, for reads, what it saw.
#[derive(Clone, Debug, Serialize)]
pub enum Action {
    Upload {
        sha: String,
    },
    /// `GET /objects/<sha>` of an acknowledged upload: did it answer other bytes, or 404?
    Read {
        sha: String,
        wrong: bool,
        missing: bool,
    },
    /// Annotation key `key` read: its version and the marker of the save that wrote it.
    AnnRead {
        key: usize,
        version: u64,
        marker: Option<String>,
    },
    /// A save with `If-Match: if_match`, writing `marker`; `version` is the one acknowledged.
    AnnSave {
        key: usize,
        if_match: u64,
        marker: String,
        version: Option<u64>,
    },
    Claim {
        task: u64,
        user: String,
        round: u64,
    },
    /// The manager puts a task back into the pool.
    Release {
        task: u64,
        round: u64,
    },
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Upload { .. } => "upload",
            Action::Read { .. } => "read",
            Action::AnnRead { .. } => "annotation read",
            Action::AnnSave { .. } => "annotation save",
            Action::Claim { .. } => "task claim",
            Action::Release { .. } => "task release",
        }
    }

    pub fn is_write(&self) -> bool {
        !matches!(self, Action::Read { .. } | Action::AnnRead { .. })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Op {
    pub id: u64,
    pub node: u64,
    /// Microseconds since the campaign started.
    pub start_us: u64,
    pub end_us: u64,
    pub action: Action,
    pub outcome: Outcome,
    /// The HTTP status and error code, or the client error.
    pub detail: String,
    /// The HTTP status, if there was an answer.
    pub status: Option<u16>,
    /// A 503 that said when to retry.
    pub retry_after: bool,
}

/// One nemesis step, for the report and for reading the history next to it.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub at_us: u64,
    pub what: String,
}

pub struct History {
    epoch: Instant,
    next_id: AtomicU64,
    ops: Mutex<Vec<Op>>,
    events: Mutex<Vec<Event>>,
}

impl Default for History {
    fn default() -> Self {
        History {
            epoch: Instant::now(),
            next_id: AtomicU64::new(1),
            ops: Mutex::new(Vec::new()),
            events: Mutex::new(Vec::new()),
        }
    }
}

impl History {
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// A fresh operation id (also used as the marker a save writes).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn record(&self, op: Op) {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }

    pub fn event(&self, what: String) {
        let at_us = self.now_us();
        eprintln!("[{:>8.1}s] {what}", at_us as f64 / 1e6);
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Event { at_us, what });
    }

    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
