//! `tessera`: runs Tessera nodes and talks to a running cluster.

mod backup;
mod ca;
mod commands;
mod config;
mod import;
mod members;
mod serve;
mod shutdown;
mod stall;
mod up;

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::config::Config;

const USAGE: &str = "\
tessera — distributed image annotation storage

USAGE:
  tessera up     [--config cluster.toml]           start every local node, initialise, supervise
  tessera run    --id N [--config cluster.toml]    run one node in the foreground
  tessera init   [--config cluster.toml]           initialise a new cluster (no-op if initialised)
  tessera ca     [--id N] [--renew] [--config ...]  create the cluster CA (if missing) and issue
                                                   node certificates for the internal RPC (every
                                                   local node, or node N); `up` does this itself
  tessera status [--config cluster.toml]           nodes, shards, leaders and lag
  tessera node restart --id N [--config ...]       restart node N gracefully (leaderships handed
                                                   off, requests drained, same process and binary
                                                   path: a replaced binary is an upgrade); waits
                                                   until it is ready again
  tessera node add --id N [--wait]                 add node N (its [[node]] entry in the config,
                                                   running with `tessera run --id N`, certificate
                                                   from `tessera ca --id N`); about 1/N of the
                                                   replicas move to it; --wait follows the moves
  tessera node remove --id N [--wait]              move node N's replicas to the others, then
                                                   take it out of the cluster
  tessera node decommission --id N [--wait]        the same for a node that is gone for good:
                                                   its replicas are rebuilt from the others
  tessera put    FILE... [--config ...]            upload images, print their SHA-256
  tessera get    SHA256 [--config ...] > FILE      download an object
  tessera backup --to DIR [--config ...]           an online, consistent backup of every object and
                                                   the whole catalogue into DIR; objects already in
                                                   DIR (by hash) are reused
  tessera restore --from DIR [--config ...]        the latest backup in DIR into a new cluster (any
                                                   node or shard count); run again to finish an
                                                   interrupted restore
  tessera import --dataset NAME PATH...            images, folders, archives, videos, PDFs into a
                                                   dataset (created if needed); run it again to
                                                   finish an interrupted import

Client commands talk to the first node of the config that answers, or to --node HOST:PORT.";

struct Args {
    command: String,
    config: PathBuf,
    id: Option<u64>,
    node: Option<String>,
    dataset: Option<String>,
    /// `--to` / `--from`: a backup directory.
    dir: Option<PathBuf>,
    rest: Vec<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let mut parsed = Args {
        command,
        config: PathBuf::from("cluster.toml"),
        id: None,
        node: None,
        dataset: None,
        dir: None,
        rest: Vec::new(),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                parsed.config = args.next().context("--config needs a path")?.into()
            }
            "--id" => {
                parsed.id = Some(
                    args.next()
                        .context("--id needs a number")?
                        .parse()
                        .context("--id")?,
                )
            }
            "--node" => parsed.node = Some(args.next().context("--node needs HOST:PORT")?),
            "--dataset" => parsed.dataset = Some(args.next().context("--dataset needs a name")?),
            "--to" | "--from" => {
                parsed.dir = Some(args.next().context("--to/--from needs a directory")?.into())
            }
            _ => parsed.rest.push(arg),
        }
    }
    Ok(parsed)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    if matches!(args.command.as_str(), "" | "help" | "-h" | "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: `tessera up` sends node logs to files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = Config::load(&args.config)?;
    // RocksDB reads run on the blocking pool: a bounded pool keeps a burst of ten thousand
    // connections from spawning hundreds of threads (and malloc arenas with them).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(64)
        .enable_all()
        .build()?;
    let node = args.node.as_deref();
    runtime.block_on(async {
        match args.command.as_str() {
            "up" => up::up(config, &args.config).await,
            "run" => serve::run(config, args.id.context("run needs --id N")?).await,
            "init" => commands::init(&config, node).await,
            "ca" => ca::provision(&config, args.id, args.rest.iter().any(|a| a == "--renew")),
            "status" => commands::status(&config, node).await,
            "node" => match args.rest.first().map(String::as_str) {
                Some("restart") => {
                    let id = args.id.context("usage: tessera node restart --id N")?;
                    commands::restart_node(&config, id).await
                }
                Some(verb @ ("add" | "remove" | "decommission")) => {
                    let id = args
                        .id
                        .with_context(|| format!("usage: tessera node {verb} --id N"))?;
                    let change = match verb {
                        "add" => members::Change::Add,
                        "remove" => members::Change::Remove,
                        _ => members::Change::Decommission,
                    };
                    let wait = args.rest.iter().any(|a| a == "--wait");
                    members::change(&config, id, change, wait).await
                }
                _ => bail!("usage: tessera node restart|add|remove|decommission --id N [--wait] [--config cluster.toml]"),
            },
            "put" => {
                let files: Vec<PathBuf> = args.rest.iter().map(PathBuf::from).collect();
                commands::put(&config, node, &files).await
            }
            "get" => {
                let [sha] = args.rest.as_slice() else {
                    bail!("usage: tessera get SHA256")
                };
                commands::get(&config, node, sha).await
            }
            "import" => {
                let name = args
                    .dataset
                    .as_deref()
                    .context("usage: tessera import --dataset NAME PATH...")?;
                let files: Vec<PathBuf> = args.rest.iter().map(PathBuf::from).collect();
                let client = commands::connect(&config, node).await?;
                import::import(&client, name, &files).await
            }
            "backup" => {
                let dir = args
                    .dir
                    .as_deref()
                    .context("usage: tessera backup --to DIR")?;
                backup::backup(&config, node, dir).await
            }
            "restore" => {
                let dir = args
                    .dir
                    .as_deref()
                    .context("usage: tessera restore --from DIR")?;
                backup::restore(&config, node, dir).await
            }
            other => bail!("unknown command {other:?}\n\n{USAGE}"),
        }
    })
}
