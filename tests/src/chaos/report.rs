//! The campaign's report: cycles per fault with recovery times, operations by outcome, answers
//! that break the API's promises (500s, 503 without `Retry-After`), findings and violations.
//! Printed as Markdown tables (pasted into `docs/reliability.md`).

use std::collections::BTreeMap;
use std::fmt::Write;

use super::checker::Findings;
use super::history::{Op, Outcome};
use super::nemesis::{Cycle, Fault};

fn percentile(sorted: &[u64], p: f64) -> String {
    if sorted.is_empty() {
        return "–".into();
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    format!("{:.1}", sorted[i] as f64 / 1000.0)
}

/// Times in seconds: median / max, and how many cycles did not recover within the limit.
fn times(values: &[Option<u64>]) -> (String, usize) {
    let mut ok: Vec<u64> = values.iter().flatten().copied().collect();
    ok.sort_unstable();
    let missing = values.iter().filter(|v| v.is_none()).count();
    (
        format!("{} / {}", percentile(&ok, 0.5), percentile(&ok, 1.0)),
        missing,
    )
}

pub fn render(header: &str, cycles: &[Cycle], ops: &[Op], findings: &Findings) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{header}\n");
    let _ = writeln!(
        out,
        "| fault | cycles | all groups led, s (median / max) | all nodes ready, s (median / max) | cycles over 5 s / 10 s | not recovered in 60 s | cycles with findings |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    let mut by_fault: BTreeMap<Fault, Vec<&Cycle>> = BTreeMap::new();
    for c in cycles {
        by_fault.entry(c.fault).or_default().push(c);
    }
    let mut all_led = Vec::new();
    let mut all_ready = Vec::new();
    for (fault, list) in &by_fault {
        let led: Vec<Option<u64>> = list.iter().map(|c| c.led_ms).collect();
        let ready: Vec<Option<u64>> = list.iter().map(|c| c.ready_ms).collect();
        all_led.extend(led.iter().copied());
        all_ready.extend(ready.iter().copied());
        let slow = list
            .iter()
            .filter(|c| c.led_ms.is_some_and(|t| t > 5000))
            .count();
        let slow_ready = list
            .iter()
            .filter(|c| c.ready_ms.is_some_and(|t| t > 10_000))
            .count();
        let (led_text, led_missing) = times(&led);
        let (ready_text, ready_missing) = times(&ready);
        let with_findings = list.iter().filter(|c| !c.findings.is_empty()).count();
        let _ = writeln!(
            out,
            "| {} | {} | {led_text} | {ready_text} | {slow} / {slow_ready} | {} | {with_findings} |",
            fault.name(),
            list.len(),
            led_missing.max(ready_missing),
        );
    }
    let (led_text, _) = times(&all_led);
    let (ready_text, _) = times(&all_ready);
    let _ = writeln!(
        out,
        "| **all** | {} | {led_text} | {ready_text} | | | |\n",
        cycles.len()
    );

    let _ = writeln!(
        out,
        "| operation | ok | failed | indeterminate | 500 | 503 without Retry-After |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let mut by_kind: BTreeMap<&str, [usize; 5]> = BTreeMap::new();
    for op in ops {
        let row = by_kind.entry(op.action.kind()).or_default();
        match op.outcome {
            Outcome::Ok => row[0] += 1,
            Outcome::Fail => row[1] += 1,
            Outcome::Info => row[2] += 1,
        }
        if op.status == Some(500) {
            row[3] += 1;
        }
        if op.status == Some(503) && !op.retry_after {
            row[4] += 1;
        }
    }
    for (kind, [ok, fail, info, e500, no_retry]) in &by_kind {
        let _ = writeln!(
            out,
            "| {kind} | {ok} | {fail} | {info} | {e500} | {no_retry} |"
        );
    }
    let mut details: BTreeMap<String, usize> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.outcome != Outcome::Ok) {
        *details
            .entry(format!("{}: {}", op.action.kind(), op.detail))
            .or_default() += 1;
    }
    let _ = writeln!(out, "\nUnsuccessful answers:\n");
    for (detail, n) in &details {
        let _ = writeln!(out, "* {n} × {detail}");
    }
    let _ = writeln!(
        out,
        "\nChecked after healing: {} acknowledged objects on every node, {} annotation keys ({} versions), {} pool tasks.",
        findings.objects_checked, findings.keys_checked, findings.versions_checked, findings.tasks_checked
    );
    let _ = writeln!(
        out,
        "\n**Safety violations: {}**",
        findings.violations.len()
    );
    for v in &findings.violations {
        let _ = writeln!(out, "* {v}");
    }
    if !findings.unknown.is_empty() {
        let _ = writeln!(
            out,
            "\nLinearisability search gave up (not counted): {:?}",
            findings.unknown
        );
    }
    let _ = writeln!(out, "\nFindings by cycle:\n");
    for c in cycles.iter().filter(|c| !c.findings.is_empty()) {
        for f in &c.findings {
            let first = f.lines().next().unwrap_or_default();
            let _ = writeln!(
                out,
                "* cycle {} ({}, {}): {first}",
                c.number,
                c.fault.name(),
                c.what
            );
        }
    }
    out
}
