//! Checks that only make sense on the upgraded cluster: the tokens and URLs handed out before
//! it, sign-ins, and new writes on top of the old data.

use bytes::Bytes;
use serde_json::{json, Value};
use tessera_client::Method;
use tessera_cluster_tests::png;

use crate::http::{self, sha_hex, str_field, u64_field, Check};
use crate::world::{act, base, job_end, refused_status, save, World};

/// Every token handed out before the upgrade is treated as the design says: access, refresh
/// and API tokens keep working until they expire; revoked ones and those of ended sessions
/// stay refused. Returns how many tokens were checked.
pub async fn old_tokens(world: &World) -> Check<usize> {
    let mut checked = 0;
    for node in &world.nodes {
        for user in &world.users {
            let client = base(node).with_token(user.tokens.access.clone());
            let me = http::get(&client, "/api/v1/me").await.map_err(|e| {
                format!("{}'s access token from before the upgrade: {e}", user.name)
            })?;
            if me.json()["username"] != user.name.as_str() {
                return Err(format!("{}'s token reads {}", user.name, me.json()));
            }
            checked += 1;
        }
        let api = base(node).with_token(world.api_token.clone());
        http::get(&api, "/api/v1/datasets")
            .await
            .map_err(|e| format!("mgr's API token from before the upgrade: {e}"))?;
        for (what, token) in [
            ("revoked", &world.revoked),
            ("ended session's", &world.ended),
        ] {
            let client = base(node).with_token(token.clone());
            let reply = http::send(&client, Method::GET, "/api/v1/me", &[], Bytes::new()).await?;
            http::expect(
                reply,
                401,
                &format!("a {what} token from before the upgrade"),
            )?;
        }
        checked += 3;
    }
    Ok(checked)
}

/// Presigned URLs handed out before the upgrade still serve (the cluster key is kept).
pub async fn old_urls(world: &World) -> Check<()> {
    let node = base(&world.nodes[2]);
    let object = http::follow(&node, &world.nodes, &world.object_url).await?;
    let sha = world.object_url.trim_start_matches("/objects/");
    let sha = sha.split('?').next().unwrap_or_default();
    if sha_hex(&object.body) != sha {
        return Err(format!("{}: wrong bytes", world.object_url));
    }
    for node in &world.nodes {
        let zip = http::follow(&base(node), &world.nodes, &world.export.0).await?;
        if sha_hex(&zip.body) != world.export.1 {
            return Err(format!(
                "the export downloaded from {node} after the upgrade differs from the one before"
            ));
        }
    }
    Ok(())
}

/// Users sign in with their passwords on every node and refresh their old sessions; disabled
/// and deleted users stay out. Returns how many sign-ins were checked.
pub async fn sign_ins(world: &World) -> Check<usize> {
    let mut checked = 0;
    for node in &world.nodes {
        for user in &world.users {
            http::sign_in(&base(node), &user.name, &user.password).await?;
            checked += 1;
        }
        for (name, password, before) in &world.refused {
            let status = refused_status(&base(node), name, password).await?;
            if status != *before {
                return Err(format!(
                    "{name}'s refused sign-in answered {before} before the upgrade, {status} after"
                ));
            }
            checked += 1;
        }
    }
    for user in &world.users {
        let fields = [
            ("grant_type", "refresh_token"),
            ("refresh_token", user.tokens.refresh.as_str()),
        ];
        http::form(&base(&world.nodes[1]), "/oauth/token", &fields, 200)
            .await
            .map_err(|e| format!("{}'s refresh token from before the upgrade: {e}", user.name))?;
        checked += 1;
    }
    Ok(checked)
}

/// New writes on top of the old data: a save, task actions, an upload added to a dataset, a
/// comment and an export. Returns a line per write.
pub async fn new_writes(world: &World) -> Check<Vec<String>> {
    let mut done = Vec::new();
    let (ann1, rev, mgr) = (
        world.client("ann1")?,
        world.client("rev")?,
        world.client("mgr")?,
    );
    let task = world.open_task;
    let sha = world
        .tasks
        .iter()
        .find(|t| t.0 == task)
        .and_then(|t| t.1.first())
        .ok_or("the open task has no image")?;
    let path = format!("/api/v1/tasks/{task}/images/{sha}/annotations");
    let current = u64_field(&http::get(&ann1, &path).await?.json(), "version", &path)?;
    let saved = save(&ann1, task, sha, current).await?;
    let history = http::get(&ann1, &format!("{path}/history")).await?.json();
    let versions = history["items"].as_array().map_or(0, Vec::len) as u64;
    if saved != current + 1 || versions != saved {
        return Err(format!(
            "a save over version {current} after the upgrade gave version {saved}, history {versions}"
        ));
    }
    done.push(format!("save on task {task}: version {current} -> {saved}"));
    act(&ann1, task, "submit", json!({})).await?;
    let reviewed = act(&rev, task, "review", json!({})).await?;
    if reviewed["state"] != "in_review" {
        return Err(format!("task {task} after submit and review: {reviewed}"));
    }
    done.push(format!("task {task}: submit, review -> in_review"));

    let bytes = png(52, 44, 0xa5_7e12);
    let reply = http::send(
        &world.client("admin")?.with_base(&world.nodes[2]),
        Method::POST,
        "/api/v1/objects",
        &[("content-type", "application/octet-stream")],
        Bytes::from(bytes.clone()),
    )
    .await?;
    let new_sha = str_field(
        &http::expect(reply, 201, "a new upload")?.json(),
        "sha256",
        "upload",
    )?;
    let dataset = world.datasets[0];
    let dataset_path = format!("/api/v1/datasets/{dataset}");
    let image_count = || async {
        let record = http::get(&mgr, &dataset_path).await?.json();
        u64_field(&record, "image_count", "dataset")
    };
    let before = image_count().await?;
    let path = format!("/api/v1/datasets/{dataset}/images");
    let images = json!({"images": [{"sha256": new_sha, "name": "after/upgrade.png"}]});
    http::json(&mgr, Method::POST, &path, images, 200).await?;
    let after = image_count().await?;
    if after != before + 1 {
        return Err(format!(
            "dataset {dataset} had {before} images, {after} after adding one"
        ));
    }
    for node in &world.nodes {
        let admin = world.client("admin")?.with_base(node);
        let object = http::get(&admin, &format!("/objects/{new_sha}")).await?;
        if object.body != bytes {
            return Err(format!("the new object read from {node} differs"));
        }
    }
    done.push(format!(
        "upload {new_sha} added to dataset {dataset}, read from every node"
    ));

    let comments = format!("/api/v1/tasks/{task}/comments");
    let pin = json!({"sha256": sha, "x": 1, "y": 2, "text": "after the upgrade"});
    http::json(&rev, Method::POST, &comments, pin, 201).await?;
    done.push(format!("comment on task {task}"));

    let set = world.sets[0];
    let path = format!("/api/v1/annotation-sets/{set}/exports");
    let options = json!({"format": "coco", "include_images": false, "only_accepted": false});
    let id = u64_field(
        &http::json(&mgr, Method::POST, &path, options, 202).await?,
        "id",
        "export",
    )?;
    let job: Value = job_end(&mgr, id).await?;
    if job["state"] != "succeeded" {
        return Err(format!("an export after the upgrade: {job}"));
    }
    let url = job["result"]["url"]
        .as_str()
        .ok_or(format!("no URL in {job}"))?;
    let zip = http::follow(&mgr, &world.nodes, url).await?;
    done.push(format!(
        "export job {id}: {} bytes downloaded",
        zip.body.len()
    ));
    Ok(done)
}
