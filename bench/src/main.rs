//! `tessera-bench serve [--quick] [--images N] [--out FILE]`
//! `tessera-bench catchup [--images N]`
//! `tessera-bench export [--images N] [--shapes K]`
//! `tessera-bench scale [--steps N,M,...] [--seconds S]`

use std::path::PathBuf;

use anyhow::{bail, Context};
use tessera_bench::{catchup, corpus, export, report, scale, serve};

const USAGE: &str = "usage: tessera-bench serve [--quick] [--images N] [--out FILE]\n       tessera-bench catchup [--images N]\n       tessera-bench export [--images N] [--shapes K]\n       tessera-bench scale [--steps N,M,...] [--seconds S]";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let mut params = serve::Params::full();
    let mut images = None;
    let mut shapes = 10;
    let mut out = PathBuf::from("target/bench/serve.json");
    let mut scale_params = scale::Params::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => params = serve::Params::quick(),
            "--images" => images = Some(args.next().context("--images N")?.parse()?),
            "--out" => out = args.next().context("--out FILE")?.into(),
            "--shapes" => shapes = args.next().context("--shapes K")?.parse()?,
            "--steps" => {
                scale_params.steps = args
                    .next()
                    .context("--steps N,M,...")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--seconds" => scale_params.seconds = args.next().context("--seconds S")?.parse()?,
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
        _ => bail!("{USAGE}"),
    }
    Ok(())
}
