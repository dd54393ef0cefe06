//! Per-annotation-set statistics, kept up to date by the state machine in the same write batch
//! as the change they count (task transitions, annotation saves), so they are replicated,
//! survive failures with the data, and reading them never scans anything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::records::get;
use crate::shape::{kind_name, Shape};
use crate::tasks::TaskState;
use crate::{key, DomainError, Records, Tx};

/// A gap between two saves of one user longer than this is not counted as active time.
const ACTIVE_GAP_MS: u64 = 5 * 60 * 1000;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Annotator {
    /// Images whose current annotations this user saved.
    pub images: u64,
    /// Shapes in those current annotations.
    pub shapes: u64,
    pub saves: u64,
    pub active_ms: u64,
    pub last_save_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Day {
    pub saves: u64,
    /// Net change of the number of shapes that day.
    pub shapes: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetStats {
    pub tasks: BTreeMap<String, u64>,
    /// (task, image) pairs whose current annotations hold at least one shape.
    pub annotated: u64,
    /// Shapes per label, then per kind.
    pub shapes: BTreeMap<String, BTreeMap<String, u64>>,
    pub annotators: BTreeMap<String, Annotator>,
    /// Days since the Unix epoch (UTC) → activity.
    pub days: BTreeMap<u64, Day>,
}

fn stats_key(set: u64) -> Vec<u8> {
    key(&format!("stats/{set:016x}"))
}

pub fn load(r: &dyn Records, set: u64) -> Result<SetStats, DomainError> {
    Ok(get(r, &stats_key(set))?.unwrap_or_default())
}

fn save(tx: &mut Tx, set: u64, stats: &SetStats) -> Result<(), DomainError> {
    tx.put_record(stats_key(set), stats)
}

fn state_name(s: TaskState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Counts `created` new tasks.
pub fn tasks_created(tx: &mut Tx, set: u64, created: u64) -> Result<(), DomainError> {
    let mut stats = load(tx, set)?;
    *stats.tasks.entry(state_name(TaskState::New)).or_default() += created;
    save(tx, set, &stats)
}

/// Moves one task from `from` to `to`.
pub fn task_moved(
    tx: &mut Tx,
    set: u64,
    from: TaskState,
    to: TaskState,
) -> Result<(), DomainError> {
    if from == to {
        return Ok(());
    }
    let mut stats = load(tx, set)?;
    let old = stats.tasks.entry(state_name(from)).or_default();
    *old = old.saturating_sub(1);
    *stats.tasks.entry(state_name(to)).or_default() += 1;
    save(tx, set, &stats)
}

/// (label, kind) counts of a shapes document.
fn census(shapes: &str) -> Vec<(String, String)> {
    Shape::parse_all(shapes)
        .into_iter()
        .map(|s| (s.label, kind_name(s.kind).to_string()))
        .collect()
}

/// Accounts a save: `previous` (shapes, saver) replaced by `shapes` saved by `user` at `at_ms`.
pub fn annotation_saved(
    tx: &mut Tx,
    set: u64,
    previous: Option<(&str, &str)>,
    shapes: &str,
    user: &str,
    at_ms: u64,
) -> Result<(), DomainError> {
    let mut stats = load(tx, set)?;
    let before = previous.map(|(s, _)| census(s)).unwrap_or_default();
    let after = census(shapes);
    for (label, kind) in &before {
        let n = stats
            .shapes
            .entry(label.clone())
            .or_default()
            .entry(kind.clone())
            .or_default();
        *n = n.saturating_sub(1);
    }
    for (label, kind) in &after {
        *stats
            .shapes
            .entry(label.clone())
            .or_default()
            .entry(kind.clone())
            .or_default() += 1;
    }
    match (before.is_empty(), after.is_empty()) {
        (true, false) => stats.annotated += 1,
        (false, true) => stats.annotated = stats.annotated.saturating_sub(1),
        _ => {}
    }
    if let Some((_, saver)) = previous {
        let old = stats.annotators.entry(saver.to_string()).or_default();
        old.images = old.images.saturating_sub(1);
        old.shapes = old.shapes.saturating_sub(before.len() as u64);
    }
    let me = stats.annotators.entry(user.to_string()).or_default();
    me.images += 1;
    me.shapes += after.len() as u64;
    me.saves += 1;
    if me.last_save_ms > 0 && at_ms > me.last_save_ms {
        me.active_ms += (at_ms - me.last_save_ms).min(ACTIVE_GAP_MS);
    }
    me.last_save_ms = me.last_save_ms.max(at_ms);
    let day = stats.days.entry(at_ms / 86_400_000).or_default();
    day.saves += 1;
    day.shapes += after.len() as i64 - before.len() as i64;
    save(tx, set, &stats)
}

/// `YYYY-MM-DD` of a day number since the Unix epoch (proleptic Gregorian, UTC).
pub fn date(days: u64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_day_numbers() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(19_723), "2024-01-01");
        assert_eq!(date(20_784), "2026-11-27");
    }

    #[test]
    fn census_counts_labels_and_kinds() {
        let shapes = r#"[{"label":"car","kind":"rectangle"},{"label":"car","kind":"polygon"}]"#;
        assert_eq!(census(shapes).len(), 2);
        assert!(census("not json").is_empty());
    }
}
