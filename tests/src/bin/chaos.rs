//! `chaos`: a seeded fault campaign against a real Tessera cluster (see `docs/reliability.md`).
//!
//! ```text
//! chaos [--seed N] [--cycles N] [--nodes N] [--replication N] [--shards N]
//!       [--faults kill-node,pause,isolate,…] [--hold-ms MIN-MAX] [--quiet-ms N]
//!       [--disk-mb N] [--fast-failover] [--fail-on-findings] [--out DIR]
//! ```
//!
//! Needs root (namespaces, iptables, tmpfs) and `tessera` built next to it. Exits 1 on any
//! safety violation, 2 when the campaign itself could not run, and with `--fail-on-findings`
//! 3 when a cycle had a finding (a node that did not recover, or a broken promise such as a
//! full disk's writes not answered 507).

use std::path::PathBuf;
use std::process::ExitCode;

use tessera_cluster_tests::chaos::{self, nemesis::Fault, sandbox, Config};
use tessera_cluster_tests::{could_not_run, runtime};

fn parse(args: &[String]) -> Result<(Config, bool), String> {
    let mut config = Config {
        seed: 1,
        nodes: 5,
        replication: 3,
        shards: 8,
        cycles: 10,
        faults: Fault::ALL.to_vec(),
        hold_ms: (2000, 6000),
        quiet_ms: 1000,
        disk_mb: 1024,
        fast_failover: false,
        out: PathBuf::new(),
    };
    let mut out = None;
    let mut fail_on_findings = false;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--fast-failover" {
            config.fast_failover = true;
            continue;
        }
        if flag == "--fail-on-findings" {
            fail_on_findings = true;
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--seed" => config.seed = number()?,
            "--cycles" => config.cycles = number()? as usize,
            "--nodes" => config.nodes = number()? as usize,
            "--replication" => config.replication = number()? as usize,
            "--shards" => config.shards = number()? as u32,
            "--quiet-ms" => config.quiet_ms = number()?,
            "--disk-mb" => config.disk_mb = number()?,
            "--out" => out = Some(PathBuf::from(value)),
            "--hold-ms" => {
                let (lo, hi) = value.split_once('-').ok_or("--hold-ms MIN-MAX")?;
                let lo = lo.parse().map_err(|_| "--hold-ms MIN-MAX")?;
                let hi: u64 = hi.parse().map_err(|_| "--hold-ms MIN-MAX")?;
                config.hold_ms = (lo, hi.max(lo));
            }
            "--faults" => {
                config.faults = value
                    .split(',')
                    .map(|name| Fault::parse(name).ok_or(format!("no fault named {name}")))
                    .collect::<Result<_, _>>()?;
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if config.nodes < 3 || config.replication > config.nodes || config.faults.is_empty() {
        return Err("needs at least 3 nodes, replication ≤ nodes and one fault".into());
    }
    config.out = out.unwrap_or_else(|| PathBuf::from(format!("target/chaos/seed-{}", config.seed)));
    Ok((config, fail_on_findings))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (config, fail_on_findings) = match parse(&args) {
        Ok(c) => c,
        Err(e) => return could_not_run("chaos", e),
    };
    if let Err(e) = sandbox::enter() {
        return could_not_run("chaos", e);
    }
    let runtime = match runtime("chaos") {
        Ok(r) => r,
        Err(code) => return code,
    };
    let out = config.out.clone();
    match runtime.block_on(chaos::run(config)) {
        Ok(outcome) => {
            println!("{}", outcome.report);
            println!("(report, history and node logs in {})", out.display());
            if outcome.violations > 0 {
                ExitCode::from(1)
            } else if fail_on_findings && outcome.cycles_with_findings > 0 {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => could_not_run("chaos", e),
    }
}
