//! Everything the workload made, read back through the API as each kind of user sees it, and
//! the difference between two such readings.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{json, Value};
use tessera_client::{Client, Method};

use crate::http::{self, sha_hex, Check};
use crate::world::{base, World};

/// `"<user> GET <path>"` → `{"status", "body"}` (JSON bodies; objects as their hash).
pub type Snapshot = BTreeMap<String, Value>;

/// Reads everything from node `node` (an index into `world.nodes`) with the tokens users had
/// before the upgrade, so that reading creates no session.
pub async fn take(world: &World, node: usize) -> Check<Snapshot> {
    let on = |name: &str| -> Check<Client> {
        Ok(base(&world.nodes[node]).with_token(world.user(name)?.tokens.access.clone()))
    };
    let mut reads: Vec<(Client, &str, String)> = Vec::new();
    let (admin, mgr) = (on("admin")?, on("mgr")?);
    reads.push((admin.clone(), "admin", "/api/v1/users?limit=1000".into()));
    for user in &world.users {
        let name = user.name.as_str();
        reads.push((admin.clone(), "admin", format!("/api/v1/users/{name}")));
        reads.push((
            admin.clone(),
            "admin",
            format!("/api/v1/users/{name}/sessions"),
        ));
        let own = on(name)?;
        for path in [
            "/api/v1/me",
            "/api/v1/me/sessions",
            "/api/v1/me/tasks?limit=1000",
        ] {
            reads.push((own.clone(), name, path.into()));
        }
    }
    for (name, _, _) in &world.refused {
        reads.push((admin.clone(), "admin", format!("/api/v1/users/{name}")));
    }
    for d in &world.deleted_datasets {
        reads.push((mgr.clone(), "mgr", format!("/api/v1/datasets/{d}")));
        reads.push((mgr.clone(), "mgr", format!("/api/v1/datasets/{d}/images")));
    }
    reads.push((on("rev")?, "rev", "/api/v1/review/tasks?limit=1000".into()));
    reads.push((on("ann2")?, "ann2", "/api/v1/pool/tasks?limit=1000".into()));
    reads.push((mgr.clone(), "mgr", "/api/v1/datasets?limit=1000".into()));
    reads.push((
        mgr.clone(),
        "mgr",
        "/api/v1/annotation-sets?limit=1000".into(),
    ));
    for d in &world.datasets {
        for path in [
            format!("/api/v1/datasets/{d}"),
            format!("/api/v1/datasets/{d}/images?limit=1000"),
            format!("/api/v1/annotation-sets?dataset={d}&limit=1000"),
            format!("/api/v1/jobs?dataset={d}&limit=1000"),
        ] {
            reads.push((mgr.clone(), "mgr", path));
        }
    }
    // The annotation sets are on the first dataset.
    let d = world.datasets[0];
    for s in &world.sets {
        for filter in [
            "annotated=true",
            "annotated=false",
            "label=car",
            "label=person",
        ] {
            let path =
                format!("/api/v1/datasets/{d}/images?annotation_set={s}&{filter}&limit=1000");
            reads.push((mgr.clone(), "mgr", path));
        }
    }
    for s in &world.sets {
        for path in [
            format!("/api/v1/annotation-sets/{s}"),
            format!("/api/v1/annotation-sets/{s}/stats"),
            format!("/api/v1/annotation-sets/{s}/tasks?limit=1000"),
            format!("/api/v1/annotation-sets/{s}/tasks?state=accepted&limit=1000"),
            format!("/api/v1/jobs?annotation_set={s}&limit=1000"),
        ] {
            reads.push((mgr.clone(), "mgr", path));
        }
    }
    for (task, shas) in &world.tasks {
        reads.push((mgr.clone(), "mgr", format!("/api/v1/tasks/{task}")));
        reads.push((mgr.clone(), "mgr", format!("/api/v1/tasks/{task}/comments")));
        for sha in shas {
            let path = format!("/api/v1/tasks/{task}/images/{sha}/annotations");
            reads.push((mgr.clone(), "mgr", format!("{path}/history")));
            reads.push((mgr.clone(), "mgr", path));
        }
    }
    for job in &world.jobs {
        reads.push((mgr.clone(), "mgr", format!("/api/v1/jobs/{job}")));
    }
    for sha in &world.objects {
        reads.push((mgr.clone(), "mgr", format!("/api/v1/objects/{sha}")));
        reads.push((admin.clone(), "admin", format!("/objects/{sha}")));
    }

    let mut snapshot = Snapshot::new();
    for (client, who, path) in reads {
        let reply = http::send(&client, Method::GET, &path, &[], Bytes::new()).await?;
        let body = if path.starts_with("/objects/") {
            json!({"sha256": sha_hex(&reply.body), "etag": reply.header("etag")})
        } else if path.ends_with("/annotations") {
            json!({"etag": reply.header("etag"), "json": reply.json()})
        } else {
            reply.json()
        };
        let status = reply.status.as_u16();
        snapshot.insert(
            format!("{who} GET {path}"),
            json!({"status": status, "body": normalise(body)}),
        );
    }
    Ok(snapshot)
}

/// Presigned URLs carry a fresh expiry and signature on every read: only their path counts.
fn normalise(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| match (k.as_str(), v) {
                    ("url", Value::String(url)) => {
                        let path = url.split('?').next().unwrap_or_default().to_string();
                        (k, Value::String(path))
                    }
                    (_, v) => (k, normalise(v)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalise).collect()),
        other => other,
    }
}

/// What differs between `before` and `after`: `(differences, fields only the new binary serves)`.
/// A field the new binary adds is no loss; a field it drops or a value it changes is.
pub fn compare(before: &Snapshot, after: &Snapshot) -> (Vec<String>, Vec<String>) {
    let mut differences = Vec::new();
    let mut added = Vec::new();
    for (read, old) in before {
        match after.get(read) {
            None => differences.push(format!("{read}: not read after the upgrade")),
            Some(new) => walk(read, "", old, new, &mut differences, &mut added),
        }
    }
    (differences, added)
}

fn walk(
    read: &str,
    at: &str,
    old: &Value,
    new: &Value,
    differences: &mut Vec<String>,
    added: &mut Vec<String>,
) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => walk(read, &format!("{at}.{k}"), v, w, differences, added),
                    None => differences.push(format!("{read}: {at}.{k} is gone (was {v})")),
                }
            }
            for k in b.keys().filter(|k| !a.contains_key(*k)) {
                added.push(format!("{at}.{k}\t{read}"));
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                walk(read, &format!("{at}[{i}]"), v, w, differences, added);
            }
        }
        _ if old == new => {}
        _ => differences.push(format!("{read}: {at} was {old}, is {new}")),
    }
}
