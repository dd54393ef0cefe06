//! The benchmark's code paths at toy sizes, so that it cannot rot: a real cluster, real nginx,
//! real ab and wrk, a tiny corpus and low concurrency. It asserts that the tables are produced
//! and that no request failed, never a timing.

use tessera_bench::{report, scale, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_benchmark_produces_complete_tables() {
    let params = serve::Params {
        images: 24,
        seed: 99,
        concurrencies: vec![1, 10],
        wrk_connections: vec![10],
        wrk_seconds: 1,
        nodes: 3,
        shards: 8,
        replication: 3,
        ingest_concurrency: 4,
        forwarding_images: 24,
        dd_mib: 8,
    };
    let result = serve::run(params).await.expect("benchmark run");
    assert_eq!(result.ingest.images, 24);
    assert_eq!(result.ingest.failed, 0);
    assert!(result.ingest.write_amplification > 0.0);
    assert!(result.ingest.disk_mb_per_s > 0.0);
    assert_eq!(
        result.rows.len(),
        2 * 2 + 1,
        "ab plain and -k for two concurrencies, one wrk run"
    );
    for row in &result.rows {
        for (side, m) in [("tessera", &row.tessera), ("nginx", &row.nginx)] {
            assert_eq!(
                m.failed, 0,
                "{} c={} {side}: failed requests",
                row.mode, row.concurrency
            );
            assert!(
                m.requests > 0 && m.req_per_s > 0.0,
                "{} c={} {side}: {m:?}",
                row.mode,
                row.concurrency
            );
        }
    }
    let forwarding = result.forwarding.as_ref().expect("forwarding measured");
    assert_eq!(forwarding.local.failed + forwarding.forwarded.failed, 0);
    assert!(forwarding.forwarded.requests > 0);
    let text = report::render(&result);
    for heading in [
        "== ab -n max(10c, 10000)",
        "== ab -k",
        "== wrk",
        "== forwarded reads",
        "Table 4",
    ] {
        assert!(text.contains(heading), "missing {heading} in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_scale_run_reads_every_step() {
    let params = scale::Params {
        steps: vec![40, 120],
        sample: 100,
        connections: 4,
        seconds: 1,
        shards: 4,
        upload_concurrency: 8,
        cache_mb: None,
    };
    let result = scale::run(params).await.expect("scale run");
    assert_eq!(
        result.steps.iter().map(|s| s.stored).collect::<Vec<_>>(),
        vec![40, 120]
    );
    for step in &result.steps {
        assert!(step.reads.requests > 0, "{step:?}");
        assert_eq!(step.reads.failed, 0, "{step:?}");
    }
    assert!(scale::render(&result).contains("| 120 |"));
}

#[test]
fn tiny_quality_run_assesses_every_image() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = tessera_bench::quality::run(dir.path(), 60, 20).expect("quality run");
    assert_eq!((run.saves, run.control_saves), (180, 60));
    assert_eq!(
        run.assessed, 60,
        "every image of the overlap-3 set, none of the control's"
    );
    // 1 % of 60 images: image 0 of bob's.
    assert_eq!(run.incremental_images, 1);
    assert!(
        run.mean_agreement > 0.5 && run.mean_agreement < 1.0,
        "{run:?}"
    );
}
