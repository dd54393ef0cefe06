//! `upgrade`: does a data dir written by an older Tessera start and serve everything under this
//! one? (issue 14; see `docs/reliability.md`, Upgrades.)
//!
//! ```text
//! upgrade --old <old tessera binary> [--new <new tessera binary>] [--dump DIR]
//! ```
//!
//! Starts a 3-node cluster on the old binary, makes through its API what users have (users of
//! every role and their tokens, datasets, uploads, an import, annotation sets, tasks through a
//! full review cycle, saved versions, comments, an annotation import and an export), reads it all
//! back, kills every node, issues the internal RPC's certificates (`tessera ca`, the upgrade
//! step for data dirs from before its mutual TLS), restarts every node on the same data dirs with
//! the new binary (default: `tessera` next to this program), and checks that every node serves
//! the same, that the old tokens and URLs behave as the design says, and that new writes work.
//! Exits 1 naming every difference, 2 when the check itself could not run.

mod after;
mod http;
mod snapshot;
mod world;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tessera_cluster_tests::{binary, could_not_run, runtime, Options, TestCluster, ADMIN_PASSWORD};

use crate::http::Check;

struct Args {
    old: PathBuf,
    new: PathBuf,
    /// Where to write every reading (`node-N-before.json`, `node-N-after.json`), if anywhere.
    dump: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let (mut old, mut new, mut dump) = (None, None, None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--old" => old = Some(PathBuf::from(value)),
            "--new" => new = Some(PathBuf::from(value)),
            "--dump" => dump = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let old =
        old.ok_or("usage: upgrade --old <tessera binary> [--new <tessera binary>] [--dump DIR]")?;
    let new = new.unwrap_or_else(binary);
    for bin in [&old, &new] {
        if !bin.is_file() {
            return Err(format!("{} is not a file", bin.display()));
        }
    }
    Ok(Args { old, new, dump })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&args) {
        Ok(a) => a,
        Err(e) => return could_not_run("upgrade", e),
    };
    let runtime = match runtime("upgrade") {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(run(args)) {
        Ok(()) => {
            println!("upgrade: PASS: the new binary serves everything the old one wrote");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("upgrade: FAIL: {e}");
            ExitCode::from(1)
        }
    }
}

/// Every node runs `bin` (`/proc/<pid>/exe`): the check must not pass by testing one binary twice.
fn runs(cluster: &TestCluster, bin: &Path) -> Check<()> {
    let want = bin
        .canonicalize()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    for node in &cluster.nodes {
        let pid = cluster
            .pid(node.id)
            .ok_or(format!("node {} is not running", node.id))?;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| e.to_string())?;
        if exe != want {
            return Err(format!(
                "node {} runs {}, not {}",
                node.id,
                exe.display(),
                want.display()
            ));
        }
    }
    Ok(())
}

/// Writes a reading to `dir/name` for whoever looks into a difference.
fn dump(dir: &Option<PathBuf>, name: &str, snapshot: &snapshot::Snapshot) -> Check<()> {
    let Some(dir) = dir else {
        return Ok(());
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let text = serde_json::to_string_pretty(snapshot).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(name), text).map_err(|e| format!("{}: {e}", dir.display()))
}

async fn run(args: Args) -> Check<()> {
    let mut cluster = TestCluster::create(&Options::default());
    cluster.set_binary(args.old.clone());
    println!("old binary {}: starting 3 nodes", args.old.display());
    cluster.boot_without_certificates().await;
    runs(&cluster, &args.old)?;
    let nodes: Vec<String> = cluster.nodes.iter().map(|n| n.http.clone()).collect();
    let world = world::build(nodes, ADMIN_PASSWORD).await?;
    println!(
        "made: {} users (+{} refused), {} objects, {} datasets, {} annotation sets, {} tasks, {} jobs",
        world.users.len(),
        world.refused.len(),
        world.objects.len(),
        world.datasets.len(),
        world.sets.len(),
        world.tasks.len(),
        world.jobs.len()
    );
    let mut before = BTreeMap::new();
    for node in 0..world.nodes.len() {
        let reading = snapshot::take(&world, node).await?;
        dump(
            &args.dump,
            &format!("node-{}-before.json", node + 1),
            &reading,
        )?;
        before.insert(node, reading);
    }
    let mut statuses = BTreeMap::new();
    for read in before[&0].values() {
        *statuses.entry(read["status"].to_string()).or_insert(0) += 1;
    }
    let (differences, _) = snapshot::compare(&before[&0], &before[&1]);
    if let Some(first) = differences.first() {
        return Err(format!(
            "the old nodes disagree before the upgrade: {first}"
        ));
    }
    println!(
        "read back from each old node: {} reads (by status: {statuses:?})",
        before[&0].len()
    );

    let ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    for id in &ids {
        cluster.kill(*id);
    }
    cluster.set_binary(args.new.clone());
    cluster.issue_certificates();
    for id in &ids {
        cluster.start_node(*id);
    }
    cluster.wait_ready().await;
    for id in &ids {
        if let Some(status) = cluster.exited(*id) {
            return Err(format!(
                "node {id} exited on the new binary: {status}\n{}",
                cluster.log_tails(40)
            ));
        }
    }
    runs(&cluster, &args.new)?;
    println!(
        "new binary {}: every node ready on the old data dirs",
        args.new.display()
    );

    let tokens = after::old_tokens(&world).await?;
    println!("old tokens: {tokens} checks on every node (access, API, revoked, ended session)");
    let mut all_added = BTreeMap::new();
    let mut failures = Vec::new();
    for (node, old) in &before {
        let new = snapshot::take(&world, *node).await?;
        dump(&args.dump, &format!("node-{}-after.json", node + 1), &new)?;
        let (differences, added) = snapshot::compare(old, &new);
        println!(
            "node {}: {} reads compared, {} differences",
            node + 1,
            old.len(),
            differences.len()
        );
        failures.extend(
            differences
                .into_iter()
                .map(|d| format!("node {}: {d}", node + 1)),
        );
        for line in added {
            let (field, read) = line.split_once('\t').unwrap_or((&line, ""));
            all_added
                .entry(field.to_string())
                .or_insert(read.to_string());
        }
    }
    for (field, read) in &all_added {
        println!("note: the new binary also serves {field} (e.g. {read})");
    }
    if !failures.is_empty() {
        return Err(format!(
            "{} differences after the upgrade:\n{}",
            failures.len(),
            failures.join("\n")
        ));
    }
    after::old_urls(&world).await?;
    println!("old presigned URLs: an object and the export's download serve the same bytes");
    let sign_ins = after::sign_ins(&world).await?;
    println!(
        "sign-ins: {sign_ins} checks (passwords on every node, refused users, refresh grants)"
    );
    for line in after::new_writes(&world).await? {
        println!("new write: {line}");
    }
    Ok(())
}
