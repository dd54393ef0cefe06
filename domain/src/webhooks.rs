//! Webhooks: managers' HTTP(S) endpoints that hear about tasks, saves, jobs and quality, with
//! their deliveries kept in the catalogue.
//!
//! Events are queued by the state machine in the same batch as the change they report, so a
//! delivery can never be lost by a crash between the change and the send, and never sent for a
//! change that did not commit. Sending is the catalogue leader's job (`tessera_api::webhooks`),
//! in two log entries per attempt: a **claim** (one node, until a deadline, decided here with
//! the proposer's clock) before it connects, and the **attempt**'s result after. A node that
//! lost the leadership cannot commit a claim, so one node at a time attempts a delivery; a
//! leader that dies between the two leaves a claim that expires, and the next leader sends
//! again — deliveries are at least once, and each carries a stable id for receivers to drop a
//! repeat.
//!
//! Each hook's queue is bounded ([`MAX_QUEUE`]): when a receiver is down for long, the oldest
//! deliveries are dropped, each with a line in the hook's log saying so. Saves are batched
//! ([`stage_saved`]): one delivery per hook carries up to [`MAX_BATCH`] saves.

use serde::{Deserialize, Serialize};

use crate::records::{get, next_id};
use crate::{key, DomainError, Records, Tx};

/// Deliveries waiting per hook at most; beyond, the oldest are dropped (and logged).
pub const MAX_QUEUE: usize = 1000;
/// Saves per `annotation.saved` delivery at most.
pub const MAX_BATCH: usize = 500;
/// How long saves gather before their batch becomes a delivery.
pub const BATCH_MS: u64 = 2_000;
/// Attempts of one delivery before it is given up (about 4.5 hours of backoff in all).
pub const MAX_ATTEMPTS: u32 = 15;
/// Log lines kept per hook.
pub const LOG_KEEP: u64 = 200;
/// Hooks at most (each save is checked against every hook).
pub const MAX_HOOKS: usize = 100;

/// What a hook can hear about.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Event {
    #[serde(rename = "task.submitted")]
    TaskSubmitted,
    #[serde(rename = "task.accepted")]
    TaskAccepted,
    #[serde(rename = "task.rejected")]
    TaskRejected,
    /// Saves, batched.
    #[serde(rename = "annotation.saved")]
    AnnotationSaved,
    /// An import or export job that succeeded.
    #[serde(rename = "job.finished")]
    JobFinished,
    /// An import or export job that failed.
    #[serde(rename = "job.failed")]
    JobFailed,
    /// A version scored below its set's `review_below` on a ground-truth image.
    #[serde(rename = "quality.below_threshold")]
    QualityBelowThreshold,
}

impl Event {
    pub fn name(self) -> &'static str {
        match self {
            Event::TaskSubmitted => "task.submitted",
            Event::TaskAccepted => "task.accepted",
            Event::TaskRejected => "task.rejected",
            Event::AnnotationSaved => "annotation.saved",
            Event::JobFinished => "job.finished",
            Event::JobFailed => "job.failed",
            Event::QualityBelowThreshold => "quality.below_threshold",
        }
    }
}

/// A registered endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    pub id: u64,
    /// The annotation set it listens to; `None`: every set, and jobs of datasets.
    pub set: Option<u64>,
    pub url: String,
    pub events: Vec<Event>,
    /// The HMAC-SHA256 key of the signatures (hex), shown once when the hook is made.
    pub secret: String,
    pub created_by: String,
    pub created_ms: u64,
    /// The next delivery's number.
    pub next_seq: u64,
    /// The next log line's number.
    pub next_log: u64,
    /// Deliveries dropped because the queue was full.
    pub dropped: u64,
    /// Deliveries waiting.
    pub queued: u64,
}

/// One queued delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub hook: u64,
    pub seq: u64,
    pub event: Event,
    /// The event's data, as JSON text.
    pub data: String,
    pub created_ms: u64,
    pub attempts: u32,
    /// Not before this time.
    pub next_ms: u64,
    /// The node attempting it, and until when its claim holds.
    pub claim: Option<(u64, u64)>,
}

/// A line of a hook's delivery log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub seq: u64,
    pub event: Event,
    pub at_ms: u64,
    pub attempt: u32,
    pub node: Option<u64>,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: u64,
    /// `delivered`, `retrying`, `gave_up` or `dropped`.
    pub outcome: String,
}

/// Saves gathering for one hook's next `annotation.saved` delivery.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Batch {
    set: u64,
    first_ms: u64,
    /// `(task, image, version, user, at_ms)` as JSON text each.
    saves: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum WebhookOp {
    Create {
        set: Option<u64>,
        url: String,
        events: Vec<Event>,
        secret: String,
        by: String,
        at_ms: u64,
    },
    Delete {
        id: u64,
    },
    /// Node `node` will attempt delivery `seq` of hook `id` until `until_ms`.
    Claim {
        id: u64,
        seq: u64,
        node: u64,
        at_ms: u64,
        until_ms: u64,
    },
    /// What node `node`'s attempt got: a status, or an error before any.
    Attempted {
        id: u64,
        seq: u64,
        node: u64,
        at_ms: u64,
        status: Option<u16>,
        error: Option<String>,
        latency_ms: u64,
    },
    /// Turns batches of saves older than [`BATCH_MS`] at `at_ms` into deliveries.
    FlushBatches {
        at_ms: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebhookOutcome {
    Hook(Box<Hook>),
    Deleted,
    NoSuchHook(u64),
    NoSuchSet(u64),
    Invalid(String),
    /// The claim is the caller's: the delivery to send.
    Claimed(Box<Delivery>),
    /// Someone else holds it, it is not due, or it is gone.
    NotClaimed,
    Recorded,
}

fn hook_key(id: u64) -> Vec<u8> {
    key(&format!("webhook/{id:016x}"))
}

fn outbox_prefix(id: u64) -> Vec<u8> {
    key(&format!("webhook-outbox/{id:016x}/"))
}

fn outbox_key(id: u64, seq: u64) -> Vec<u8> {
    key(&format!("webhook-outbox/{id:016x}/{seq:016x}"))
}

fn log_prefix(id: u64) -> Vec<u8> {
    key(&format!("webhook-log/{id:016x}/"))
}

fn log_key(id: u64, n: u64) -> Vec<u8> {
    key(&format!("webhook-log/{id:016x}/{n:016x}"))
}

fn batch_key(id: u64) -> Vec<u8> {
    key(&format!("webhook-batch/{id:016x}"))
}

const NEXT_ID: &str = "webhook-next-id";

pub fn hook(r: &dyn Records, id: u64) -> Result<Option<Hook>, DomainError> {
    get(r, &hook_key(id))
}

/// Every hook, in id order.
pub fn hooks(r: &dyn Records) -> Result<Vec<Hook>, DomainError> {
    crate::records::scan(r, &key("webhook/"), None).collect()
}

/// A hook's queued deliveries, oldest first.
pub fn queue(r: &dyn Records, id: u64, limit: usize) -> Result<Vec<Delivery>, DomainError> {
    crate::records::scan(r, &outbox_prefix(id), None)
        .take(limit)
        .collect()
}

/// A hook's log, newest first.
pub fn log(r: &dyn Records, id: u64, limit: usize) -> Result<Vec<LogLine>, DomainError> {
    let mut lines: Vec<LogLine> =
        crate::records::scan(r, &log_prefix(id), None).collect::<Result<_, _>>()?;
    lines.reverse();
    lines.truncate(limit);
    Ok(lines)
}

/// Whether any hook has saves gathering since before `before_ms`.
pub fn batches_due(r: &dyn Records, before_ms: u64) -> Result<bool, DomainError> {
    for item in crate::records::scan::<Batch>(r, &key("webhook-batch/"), None) {
        if item?.first_ms <= before_ms {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The backoff after `attempts` failed attempts: 1 s doubling, at most an hour.
pub fn backoff_ms(attempts: u32) -> u64 {
    1_000u64
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(12))
        .min(3_600_000)
}

fn listens(h: &Hook, set: Option<u64>, event: Event) -> bool {
    h.events.contains(&event) && (h.set.is_none() || h.set == set)
}

fn write_log(tx: &mut Tx, h: &mut Hook, line: LogLine) -> Result<(), DomainError> {
    let n = h.next_log;
    h.next_log += 1;
    tx.put_record(log_key(h.id, n), &line)?;
    if n >= LOG_KEEP {
        tx.delete(log_key(h.id, n - LOG_KEEP));
    }
    Ok(())
}

/// Queues a delivery on `h` (dropping the oldest, logged, when the queue is full).
fn enqueue(
    tx: &mut Tx,
    h: &mut Hook,
    event: Event,
    data: String,
    at_ms: u64,
) -> Result<(), DomainError> {
    let full = h.queued >= MAX_QUEUE as u64;
    if let Some(oldest) = queue(tx, h.id, 1)?.into_iter().next().filter(|_| full) {
        tx.delete(outbox_key(h.id, oldest.seq));
        h.dropped += 1;
        h.queued -= 1;
        let line = LogLine {
            seq: oldest.seq,
            event: oldest.event,
            at_ms,
            attempt: oldest.attempts,
            node: None,
            status: None,
            error: Some(format!(
                "the queue held {MAX_QUEUE} deliveries; the oldest was dropped"
            )),
            latency_ms: 0,
            outcome: "dropped".into(),
        };
        write_log(tx, h, line)?;
    }
    let seq = h.next_seq;
    h.next_seq += 1;
    h.queued += 1;
    let delivery = Delivery {
        hook: h.id,
        seq,
        event,
        data,
        created_ms: at_ms,
        attempts: 0,
        next_ms: at_ms,
        claim: None,
    };
    tx.put_record(outbox_key(h.id, seq), &delivery)
}

/// Queues `event` with `data` for every hook listening to it on `set`.
pub fn stage_event(
    tx: &mut Tx,
    set: Option<u64>,
    event: Event,
    data: &serde_json::Value,
    at_ms: u64,
) -> Result<(), DomainError> {
    for mut h in hooks(tx)? {
        if listens(&h, set, event) {
            enqueue(tx, &mut h, event, data.to_string(), at_ms)?;
            tx.put_record(hook_key(h.id), &h)?;
        }
    }
    Ok(())
}

/// Adds a save to the gathering batch of every hook listening to saves on `set`; a full batch
/// becomes a delivery at once.
pub fn stage_saved(
    tx: &mut Tx,
    set: u64,
    save: &serde_json::Value,
    at_ms: u64,
) -> Result<(), DomainError> {
    for mut h in hooks(tx)? {
        if !listens(&h, Some(set), Event::AnnotationSaved) {
            continue;
        }
        let mut batch: Batch = get(tx, &batch_key(h.id))?.unwrap_or(Batch {
            set,
            first_ms: at_ms,
            saves: Vec::new(),
        });
        batch.saves.push(save.to_string());
        if batch.saves.len() >= MAX_BATCH {
            flush(tx, &mut h, batch, at_ms)?;
            tx.put_record(hook_key(h.id), &h)?;
        } else {
            tx.put_record(batch_key(h.id), &batch)?;
        }
    }
    Ok(())
}

fn flush(tx: &mut Tx, h: &mut Hook, batch: Batch, at_ms: u64) -> Result<(), DomainError> {
    tx.delete(batch_key(h.id));
    let saves: Vec<serde_json::Value> = batch
        .saves
        .iter()
        .filter_map(|s| serde_json::from_str(s).ok())
        .collect();
    let data = serde_json::json!({ "annotation_set": batch.set, "saves": saves });
    enqueue(tx, h, Event::AnnotationSaved, data.to_string(), at_ms)
}

/// The first problem of a hook's URL and events (the API also refuses the cluster's own ports,
/// which it knows and this crate does not).
pub fn problem(url: &str, events: &[Event]) -> Option<String> {
    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
    if !scheme_ok {
        return Some("url: an http:// or https:// URL".into());
    }
    if url.len() > 2000 || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Some("url: at most 2000 characters, no spaces or control characters".into());
    }
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains('@') {
        return Some("url: a host, without user or password".into());
    }
    if events.is_empty() {
        return Some("events: at least one event".into());
    }
    None
}

pub fn stage(tx: &mut Tx, op: &WebhookOp) -> Result<WebhookOutcome, DomainError> {
    Ok(match op {
        WebhookOp::Create {
            set,
            url,
            events,
            secret,
            by,
            at_ms,
        } => {
            if let Some(p) = problem(url, events) {
                return Ok(WebhookOutcome::Invalid(p));
            }
            if let Some(s) = set {
                if crate::annotation_sets::annotation_set(tx, *s)?.is_none() {
                    return Ok(WebhookOutcome::NoSuchSet(*s));
                }
            }
            if hooks(tx)?.len() >= MAX_HOOKS {
                return Ok(WebhookOutcome::Invalid(format!(
                    "at most {MAX_HOOKS} webhooks; delete one first"
                )));
            }
            let mut events = events.clone();
            events.sort();
            events.dedup();
            let h = Hook {
                id: next_id(tx, NEXT_ID)?,
                set: *set,
                url: url.clone(),
                events,
                secret: secret.clone(),
                created_by: by.clone(),
                created_ms: *at_ms,
                next_seq: 1,
                next_log: 0,
                dropped: 0,
                queued: 0,
            };
            tx.put_record(hook_key(h.id), &h)?;
            WebhookOutcome::Hook(Box::new(h))
        }
        WebhookOp::Delete { id } => {
            if hook(tx, *id)?.is_none() {
                return Ok(WebhookOutcome::NoSuchHook(*id));
            }
            tx.delete(hook_key(*id));
            tx.delete(batch_key(*id));
            for prefix in [outbox_prefix(*id), log_prefix(*id)] {
                let keys: Vec<Vec<u8>> = tx
                    .scan(&prefix, None)
                    .map(|item| item.map(|(k, _)| k))
                    .collect::<Result<_, _>>()?;
                for k in keys {
                    tx.delete(k);
                }
            }
            WebhookOutcome::Deleted
        }
        WebhookOp::Claim {
            id,
            seq,
            node,
            at_ms,
            until_ms,
        } => {
            let Some(mut d) = get::<Delivery>(tx, &outbox_key(*id, *seq))? else {
                return Ok(WebhookOutcome::NotClaimed);
            };
            let held = d
                .claim
                .is_some_and(|(n, until)| n != *node && until > *at_ms);
            // Deliveries of a hook go in order: only the oldest may be claimed.
            let first = queue(tx, *id, 1)?.first().map(|f| f.seq) == Some(*seq);
            if held || d.next_ms > *at_ms || !first {
                return Ok(WebhookOutcome::NotClaimed);
            }
            d.claim = Some((*node, *until_ms));
            tx.put_record(outbox_key(*id, *seq), &d)?;
            WebhookOutcome::Claimed(Box::new(d))
        }
        WebhookOp::Attempted {
            id,
            seq,
            node,
            at_ms,
            status,
            error,
            latency_ms,
        } => {
            let (Some(mut h), Some(mut d)) =
                (hook(tx, *id)?, get::<Delivery>(tx, &outbox_key(*id, *seq))?)
            else {
                return Ok(WebhookOutcome::NotClaimed);
            };
            if d.claim.map(|(n, _)| n) != Some(*node) {
                return Ok(WebhookOutcome::NotClaimed);
            }
            d.attempts += 1;
            d.claim = None;
            let delivered = status.is_some_and(|s| (200..300).contains(&s));
            let outcome = if delivered || d.attempts >= MAX_ATTEMPTS {
                tx.delete(outbox_key(*id, *seq));
                h.queued = h.queued.saturating_sub(1);
                if delivered {
                    "delivered"
                } else {
                    "gave_up"
                }
            } else {
                d.next_ms = at_ms.saturating_add(backoff_ms(d.attempts));
                tx.put_record(outbox_key(*id, *seq), &d)?;
                "retrying"
            };
            let line = LogLine {
                seq: *seq,
                event: d.event,
                at_ms: *at_ms,
                attempt: d.attempts,
                node: Some(*node),
                status: *status,
                error: error.clone(),
                latency_ms: *latency_ms,
                outcome: outcome.into(),
            };
            write_log(tx, &mut h, line)?;
            tx.put_record(hook_key(*id), &h)?;
            WebhookOutcome::Recorded
        }
        WebhookOp::FlushBatches { at_ms } => {
            for mut h in hooks(tx)? {
                let Some(batch) = get::<Batch>(tx, &batch_key(h.id))? else {
                    continue;
                };
                if batch.first_ms.saturating_add(BATCH_MS) <= *at_ms {
                    flush(tx, &mut h, batch, *at_ms)?;
                    tx.put_record(hook_key(h.id), &h)?;
                }
            }
            WebhookOutcome::Recorded
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::MemRecords;
    use serde_json::json;

    fn apply(store: &mut MemRecords, op: WebhookOp) -> WebhookOutcome {
        let mut tx = Tx::new(store);
        let outcome = stage(&mut tx, &op).expect("stage");
        let writes = tx.into_writes();
        store.commit(writes);
        outcome
    }

    fn event(store: &mut MemRecords, at_ms: u64) {
        let mut tx = Tx::new(store);
        stage_event(
            &mut tx,
            Some(1),
            Event::TaskSubmitted,
            &json!({"task": at_ms}),
            at_ms,
        )
        .expect("event");
        let writes = tx.into_writes();
        store.commit(writes);
    }

    fn global_hook(store: &mut MemRecords, events: Vec<Event>) -> u64 {
        let op = WebhookOp::Create {
            set: None,
            url: "http://receiver.example:8080/hook".into(),
            events,
            secret: "00".repeat(32),
            by: "mgr".into(),
            at_ms: 0,
        };
        match apply(store, op) {
            WebhookOutcome::Hook(h) => h.id,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_node_at_a_time_in_order_with_backoff_and_a_log() {
        let mut store = MemRecords::default();
        let id = global_hook(&mut store, vec![Event::TaskSubmitted]);
        event(&mut store, 10);
        event(&mut store, 11);
        let claim = |store: &mut MemRecords, seq, node, at_ms| {
            apply(
                store,
                WebhookOp::Claim {
                    id,
                    seq,
                    node,
                    at_ms,
                    until_ms: at_ms + 30_000,
                },
            )
        };
        // The second waits for the first; the first is one node's until its claim runs out.
        assert_eq!(claim(&mut store, 2, 1, 20), WebhookOutcome::NotClaimed);
        assert!(matches!(
            claim(&mut store, 1, 1, 20),
            WebhookOutcome::Claimed(_)
        ));
        assert_eq!(claim(&mut store, 1, 2, 25), WebhookOutcome::NotClaimed);
        // Node 1 died; after its claim expires node 2 takes over, and node 1's late answer
        // does not count.
        assert!(matches!(
            claim(&mut store, 1, 2, 30_021),
            WebhookOutcome::Claimed(_)
        ));
        let attempted = |store: &mut MemRecords, node, at_ms, status| {
            apply(
                store,
                WebhookOp::Attempted {
                    id,
                    seq: 1,
                    node,
                    at_ms,
                    status,
                    error: None,
                    latency_ms: 5,
                },
            )
        };
        assert_eq!(
            attempted(&mut store, 1, 30_030, Some(200)),
            WebhookOutcome::NotClaimed
        );
        assert_eq!(
            attempted(&mut store, 2, 30_030, Some(500)),
            WebhookOutcome::Recorded
        );
        // Retried after a second, not before.
        assert_eq!(claim(&mut store, 1, 2, 30_500), WebhookOutcome::NotClaimed);
        assert!(matches!(
            claim(&mut store, 1, 2, 31_030),
            WebhookOutcome::Claimed(_)
        ));
        assert_eq!(
            attempted(&mut store, 2, 31_040, Some(204)),
            WebhookOutcome::Recorded
        );
        assert_eq!(queue(&store, id, 10).expect("queue").len(), 1);
        let lines = log(&store, id, 10).expect("log");
        let outcomes: Vec<&str> = lines.iter().map(|l| l.outcome.as_str()).collect();
        assert_eq!(outcomes, vec!["delivered", "retrying"]);
        assert_eq!(lines[1].status, Some(500));
    }

    #[test]
    fn a_full_queue_drops_its_oldest_with_a_record_and_saves_are_batched() {
        let mut store = MemRecords::default();
        let id = global_hook(
            &mut store,
            vec![Event::TaskSubmitted, Event::AnnotationSaved],
        );
        for at in 0..(MAX_QUEUE as u64 + 3) {
            event(&mut store, at);
        }
        let waiting = queue(&store, id, usize::MAX).expect("queue");
        assert_eq!(waiting.len(), MAX_QUEUE);
        assert_eq!(waiting[0].seq, 4, "the three oldest dropped");
        let h = hook(&store, id).expect("read").expect("hook");
        assert_eq!(h.dropped, 3);
        assert!(log(&store, id, 10)
            .expect("log")
            .iter()
            .all(|l| l.outcome == "dropped"));

        let mut store = MemRecords::default();
        let id = global_hook(&mut store, vec![Event::AnnotationSaved]);
        for at in 0..3u64 {
            let mut tx = Tx::new(&store);
            stage_saved(&mut tx, 7, &json!({"task": 1, "version": at}), 100 + at).expect("saved");
            let writes = tx.into_writes();
            store.commit(writes);
        }
        assert!(queue(&store, id, 10).expect("queue").is_empty());
        assert!(!batches_due(&store, 99).expect("due"));
        assert!(batches_due(&store, 100).expect("due"));
        assert_eq!(
            apply(
                &mut store,
                WebhookOp::FlushBatches {
                    at_ms: 100 + BATCH_MS - 1
                }
            ),
            WebhookOutcome::Recorded
        );
        assert!(
            queue(&store, id, 10).expect("queue").is_empty(),
            "too young to flush"
        );
        apply(
            &mut store,
            WebhookOp::FlushBatches {
                at_ms: 100 + BATCH_MS,
            },
        );
        let waiting = queue(&store, id, 10).expect("queue");
        assert_eq!(waiting.len(), 1);
        let data: serde_json::Value = serde_json::from_str(&waiting[0].data).expect("json");
        assert_eq!(data["saves"].as_array().map(Vec::len), Some(3));
        assert_eq!(data["annotation_set"], 7);
    }

    #[test]
    fn bad_urls_and_events_are_refused() {
        assert!(problem("ftp://x/y", &[Event::TaskSubmitted]).is_some_and(|p| p.starts_with("url")));
        assert!(problem("http://user:pw@x/", &[Event::TaskSubmitted]).is_some());
        assert!(problem("http:// x/", &[Event::TaskSubmitted]).is_some());
        assert!(problem("https://x.example/h", &[]).is_some_and(|p| p.starts_with("events")));
        assert_eq!(
            problem("https://x.example:9443/h?a=1", &[Event::JobFailed]),
            None
        );
        assert_eq!(backoff_ms(1), 1_000);
        assert_eq!(backoff_ms(3), 4_000);
        assert_eq!(backoff_ms(30), 3_600_000);
    }
}
