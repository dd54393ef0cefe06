//! The benchmark's tables.

use std::fmt::Write;

use crate::load::Measurement;
use crate::serve::Report;

/// The paper's Table 4: total ms for `ab -n 10c -c c`, single / multi instance.
const PAPER: [(u64, u64, u64); 5] = [
    (1, 17, 18),
    (10, 32, 30),
    (100, 311, 275),
    (1000, 3198, 2799),
    (10_000, 27_530, 17_553),
];

fn cells(m: &Measurement) -> String {
    format!(
        "{:>9.0} {:>8.0} {:>7.1} {:>6.1} {:>6.1} {:>5} {:>6.1}",
        m.total_ms, m.req_per_s, m.mib_per_s, m.p50_ms, m.p99_ms, m.failed, m.cpu_us_per_req
    )
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() && b.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

/// Renders the report as text tables.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let i = &report.ingest;
    let _ = writeln!(
        out,
        "\nIngest: {} images, {:.1} MB in {:.1}s: {:.0} images/s, {:.1} MB/s, replication {}, {} failed",
        i.images, i.bytes as f64 / 1e6, i.seconds, i.images_per_s, i.mb_per_s, i.replication, i.failed
    );
    let _ = writeln!(
        out,
        "Write amplification: {:.2} bytes written per byte uploaded ({:.2} per replica); data dirs grew {:.2}x",
        i.write_amplification, i.write_amplification_per_replica, i.disk_bytes_per_uploaded_byte
    );
    let _ = writeln!(
        out,
        "Disk (dd bs=1M conv=fdatasync, same filesystem, same run): {:.0} MB/s; ingest × replication × write amplification = {:.1} MB/s = {:.0}% of it",
        i.disk_mb_per_s,
        i.mb_per_s * i.write_amplification,
        100.0 * i.disk_share
    );
    let rss: Vec<String> = report
        .peak_rss_mib
        .iter()
        .map(|r| format!("{r:.0}"))
        .collect();
    let _ = writeln!(out, "Peak RSS per node (MiB): {}", rss.join(", "));
    let hit_rate =
        100.0 * report.cache_hits as f64 / (report.cache_hits + report.cache_misses).max(1) as f64;
    let _ = writeln!(
        out,
        "Idle cluster CPU (Raft heartbeats, all nodes): {:.1} ms/s. Object cache of the serving node: {} hits, {} misses ({hit_rate:.1}% hits).",
        report.idle_cpu_ms_per_s, report.cache_hits, report.cache_misses
    );
    let _ = writeln!(
        out,
        "cpu µs: per request, of the serving Tessera node / of nginx's master and workers."
    );
    let header = "  total ms    req/s   MiB/s    p50    p99  fail cpu µs";
    let mut mode = String::new();
    for row in &report.rows {
        if row.mode != mode {
            mode = row.mode.clone();
            let what = match mode.as_str() {
                "ab" => format!(
                    "ab -n max(10c, 10000) -c c, new connection per request, one {} B JPEG",
                    report.object_bytes
                ),
                "ab -k" => format!(
                    "ab -k -n max(10c, 10000) -c c, keep-alive, one {} B JPEG",
                    report.object_bytes
                ),
                _ => format!(
                    "wrk, random URLs over {} images, {} s",
                    report.params.images, report.params.wrk_seconds
                ),
            };
            let _ = writeln!(out, "\n== {what} ==");
            let _ = writeln!(
                out,
                "{:>6} | Tessera{header} | nginx  {header} | Tessera/nginx req/s p99 cpu",
                "c"
            );
        }
        let (t, n) = (&row.tessera, &row.nginx);
        let _ = writeln!(
            out,
            "{:>6} |        {} |        {} | {:>11} {:>5} {:>5}",
            row.concurrency,
            cells(t),
            cells(n),
            ratio(t.req_per_s, n.req_per_s),
            ratio(t.p99_ms, n.p99_ms),
            ratio(t.cpu_us_per_req, n.cpu_us_per_req)
        );
    }
    if let Some(f) = &report.forwarding {
        let _ = writeln!(
            out,
            "\n== forwarded reads: wrk c={} on node 1 of 4 (replication 3), CPU of all nodes ==",
            f.connections
        );
        let _ = writeln!(out, "{:>10} |{header}", "");
        let _ = writeln!(out, "{:>10} | {}", "local", cells(&f.local));
        let _ = writeln!(out, "{:>10} | {}", "forwarded", cells(&f.forwarded));
        let _ = writeln!(
            out,
            "forwarded/local: req/s {}, cpu per request {}",
            ratio(f.forwarded.req_per_s, f.local.req_per_s),
            ratio(f.forwarded.cpu_us_per_req, f.local.cpu_us_per_req)
        );
    }
    let _ = writeln!(
        out,
        "\nThe paper's Table 4 (ab -n 10c -c c, total ms; 5 Xeon nodes, 10 GbE):"
    );
    let _ = writeln!(out, "{:>6} {:>8} {:>8}", "c", "single", "multi");
    for (c, single, multi) in PAPER {
        let _ = writeln!(out, "{c:>6} {single:>8} {multi:>8}");
    }
    out
}
