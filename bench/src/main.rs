//! `tessera-bench serve [--quick] [--images N] [--out FILE]`

use std::path::PathBuf;

use anyhow::{bail, Context};
use tessera_bench::{report, serve};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    if command != "serve" {
        bail!("usage: tessera-bench serve [--quick] [--images N] [--out FILE]");
    }
    let mut params = serve::Params::full();
    let mut out = PathBuf::from("target/bench/serve.json");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => {
                params = serve::Params {
                    images: params.images,
                    ..serve::Params::quick()
                }
            }
            "--images" => params.images = args.next().context("--images N")?.parse()?,
            "--out" => out = args.next().context("--out FILE")?.into(),
            other => bail!("unknown argument {other}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(serve::run(params))?;
    println!("{}", report::render(&result));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&result)?)?;
    println!("JSON: {}", out.display());
    Ok(())
}
