//! `tessera-bench serve [--quick] [--images N] [--out FILE]`
//! `tessera-bench catchup [--images N]`
//! `tessera-bench export [--images N] [--shapes K]`
//! `tessera-bench catalogue [--beats N] [--saves N]`
//! `tessera-bench scale [--steps N,M,...] [--seconds S] [--cache-mb M]`
//! `tessera-bench quality [--images N] [--shapes K]`
//! `tessera-bench rebalance [--images N] [--rate R] [--limits A,B,...]`

use std::path::PathBuf;

use anyhow::{bail, Context};
use tessera_bench::{catalogue, catchup, corpus, export, quality, rebalance, report, scale, serve};

const USAGE: &str = "usage: tessera-bench serve [--quick] [--images N] [--out FILE]\n       tessera-bench catchup [--images N]\n       tessera-bench export [--images N] [--shapes K]\n       tessera-bench scale [--steps N,M,...] [--seconds S] [--cache-mb M]\n       tessera-bench catalogue [--beats N] [--saves N]\n       tessera-bench quality [--images N] [--shapes K]\n       tessera-bench rebalance [--images N] [--rate R] [--limits MIB,MIB,...]";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let mut params = serve::Params::full();
    let mut images = None;
    let mut shapes = 10;
    let mut beats = 3600;
    let mut saves = 1_000_000;
    let mut out = PathBuf::from("target/bench/serve.json");
    let mut scale_params = scale::Params::default();
    let mut moves = rebalance::Params::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => params = serve::Params::quick(),
            "--images" => images = Some(args.next().context("--images N")?.parse()?),
            "--out" => out = args.next().context("--out FILE")?.into(),
            "--shapes" => shapes = args.next().context("--shapes K")?.parse()?,
            "--beats" => beats = args.next().context("--beats N")?.parse()?,
            "--saves" => saves = args.next().context("--saves N")?.parse()?,
            "--steps" => {
                scale_params.steps = args
                    .next()
                    .context("--steps N,M,...")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--seconds" => scale_params.seconds = args.next().context("--seconds S")?.parse()?,
            "--cache-mb" => {
                scale_params.cache_mb = Some(args.next().context("--cache-mb M")?.parse()?)
            }
            "--rate" => moves.rate = args.next().context("--rate R")?.parse()?,
            "--limits" => {
                moves.limits = args
                    .next()
                    .context("--limits MIB,MIB,...")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match command.as_str() {
        "serve" => {
            params.images = images.unwrap_or(params.images);
            let result = runtime.block_on(serve::run(params))?;
            println!("{}", report::render(&result));
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&out, serde_json::to_string_pretty(&result)?)?;
            println!("JSON: {}", out.display());
        }
        "catchup" => {
            let count = images.unwrap_or(2000);
            let dir = std::env::temp_dir().join("tessera-bench-corpus-1");
            let corpus = corpus::generate(&dir, count, 1)?;
            let result = runtime.block_on(catchup::run(&corpus, count / 10))?;
            println!(
                "snapshot catch-up: {:.0} MB written while the replica was down, {:.0} MB during catch-up; \
                 caught up in {:.1}s through a snapshot at index {}; its peak RSS {:.0} MiB",
                result.bytes_while_down as f64 / 1e6,
                result.bytes_during_catch_up as f64 / 1e6,
                result.seconds,
                result.snapshot_index,
                result.peak_rss_mib
            );
        }
        "export" => {
            let count = images.unwrap_or(100_000);
            let result = runtime.block_on(export::run(count, shapes))?;
            println!(
                "export of {} shapes over {} images (set built in {:.0} s), node RSS sampled every 20 ms:",
                result.shapes, result.images, result.setup_seconds
            );
            println!(
                "| format | seconds | zip MB | RSS before (MiB) | peak (MiB) | growth (MiB) |"
            );
            println!("|---|---|---|---|---|---|");
            for r in &result.runs {
                println!(
                    "| {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} |",
                    r.format, r.seconds, r.zip_mb, r.baseline_rss_mib, r.peak_rss_mib, r.growth_mib
                );
            }
        }
        "catalogue" => {
            let dir = tempfile::tempdir()?;
            let started = std::time::Instant::now();
            let rows = catalogue::run(dir.path(), beats, saves)?;
            println!(
                "catalogue of group 0 (ops applied in process, {:.0} s):",
                started.elapsed().as_secs_f64()
            );
            println!("| when | records | MB | of which request records (MB) | load at start-up: prefixes (ms) | whole range, as before (ms) |");
            println!("|---|---|---|---|---|---|");
            for r in &rows.snapshots {
                println!(
                    "| {} | {} | {:.1} | {:.1} | {:.0} | {:.0} |",
                    r.label,
                    r.records,
                    r.total_bytes as f64 / 1e6,
                    r.request_bytes as f64 / 1e6,
                    r.load_ms_prefixes,
                    r.load_ms_full_scan
                );
            }
            println!(
                "request records the previous code kept for the same {} ops, forever: {:.1} MB",
                rows.ops,
                rows.kept_before as f64 / 1e6
            );
        }
        "quality" => {
            let dir = tempfile::tempdir()?;
            let r = quality::run(dir.path(), images.unwrap_or(100_000), shapes)?;
            println!(
                "label quality, {} images x 3 annotators x {} shapes (applied in process):",
                r.images, r.shapes
            );
            println!("| | saves | apply p50 (µs) | apply p99 (µs) |");
            println!("|---|---|---|---|");
            println!(
                "| overlap 3, quality marks written | {} | {:.0} | {:.0} |",
                r.saves, r.with_marks_p50_us, r.with_marks_p99_us
            );
            println!(
                "| overlap 1, nothing marked | {} | {:.0} | {:.0} |",
                r.control_saves, r.without_marks_p50_us, r.without_marks_p99_us
            );
            println!(
                "full recompute: {} images in {:.1} s ({:.0} µs per image); after 1 % re-saved: {} images in {:.2} s; mean agreement {:.3}",
                r.assessed,
                r.full_seconds,
                r.full_seconds * 1e6 / r.assessed.max(1) as f64,
                r.incremental_images,
                r.incremental_seconds,
                r.mean_agreement
            );
        }
        "scale" => {
            let result = runtime.block_on(scale::run(scale_params))?;
            println!("{}", scale::render(&result));
            let out = PathBuf::from("target/bench/scale.json");
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&out, serde_json::to_string_pretty(&result)?)?;
            println!("JSON: {}", out.display());
        }
        "rebalance" => {
            let count = images.unwrap_or(14_500);
            let dir = std::env::temp_dir().join("tessera-bench-corpus-3");
            let corpus = corpus::generate(&dir, count, 3)?;
            let runs = runtime.block_on(rebalance::run(&corpus, &moves))?;
            println!(
                "adding a 4th node to 3 nodes holding {:.2} GB ({} objects, 32 shards, RF 3); GETs at {}/s (open loop):",
                runs.first().map_or(0, |r| r.stored_bytes) as f64 / 1e9,
                count,
                moves.rate
            );
            println!("| snapshot limit (MiB/s) | moved (MB) | replicas moved | converged (s) | GET p50/p99 before (ms) | during | after | failed GETs |");
            println!("|---|---|---|---|---|---|---|---|");
            for r in &runs {
                println!(
                    "| {} | {:.0} | {} of {} ({:.0} %) | {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {} of {} |",
                    r.snapshot_mib_per_s,
                    r.moved_bytes as f64 / 1e6,
                    r.groups_moved,
                    r.groups * 3,
                    100.0 * r.groups_moved as f64 / (r.groups * 3) as f64,
                    r.converge_s,
                    r.before.p50_ms,
                    r.before.p99_ms,
                    r.during.p50_ms,
                    r.during.p99_ms,
                    r.after.p50_ms,
                    r.after.p99_ms,
                    r.before.failed + r.during.failed + r.after.failed,
                    r.before.requests + r.during.requests + r.after.requests
                );
            }
        }
        _ => bail!("{USAGE}"),
    }
    Ok(())
}
