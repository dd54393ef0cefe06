//! What users have in a cluster, made through the HTTP API of the binary that runs it (the old
//! one): only routes and fields that binary serves are used.

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use tessera_client::{Client, Method};
use tessera_cluster_tests::png;

use crate::http::{self, sha_hex, str_field, u64_field, Check, SignIn};

/// A user and the tokens they were given before the upgrade.
pub struct User {
    pub name: String,
    pub password: String,
    pub tokens: SignIn,
}

/// Everything the upgrade must keep, with the handles the checks need.
pub struct World {
    /// Node HTTP addresses, node 1 first.
    pub nodes: Vec<String>,
    /// `admin`, `mgr` (manager), `rev` (reviewer), `ann1` and `ann2` (annotators).
    pub users: Vec<User>,
    /// A long-lived API token of `mgr`.
    pub api_token: String,
    /// An access token of `rev` revoked through `/oauth/revoke`.
    pub revoked: String,
    /// An access token of a session of `ann1` that was ended.
    pub ended: String,
    /// Users who must not sign in any more (disabled, deleted): name, password, and the status
    /// the old binary refused their password grant with.
    pub refused: Vec<(String, String, u16)>,
    /// Every object uploaded (some no longer referenced by any dataset).
    pub objects: Vec<String>,
    pub datasets: Vec<u64>,
    /// Datasets deleted before the upgrade (their reads answer 404).
    pub deleted_datasets: Vec<u64>,
    pub sets: Vec<u64>,
    /// Every task, with its images.
    pub tasks: Vec<(u64, Vec<String>)>,
    pub jobs: Vec<u64>,
    /// The export's presigned download URL as the old binary gave it, and its zip's hash.
    pub export: (String, String),
    /// A presigned object URL from a task page.
    pub object_url: String,
    /// `ann1`'s task left in progress, for a save and a submit after the upgrade.
    pub open_task: u64,
}

impl World {
    pub fn user(&self, name: &str) -> Check<&User> {
        self.users
            .iter()
            .find(|u| u.name == name)
            .ok_or(format!("no user {name} in the workload"))
    }

    /// `name`'s client on node 1, with the access token they had before the upgrade.
    pub fn client(&self, name: &str) -> Check<Client> {
        Ok(base(&self.nodes[0]).with_token(self.user(name)?.tokens.access.clone()))
    }
}

pub fn base(http: &str) -> Client {
    Client::new(http).with_timeout(Duration::from_secs(30))
}

const LABELS: &str = r##"[
    {"name": "car", "color": "#ff0000", "kinds": ["rectangle", "polygon"],
     "attributes": [{"name": "colour", "type": "select", "options": ["red", "blue"], "required": false}]},
    {"name": "person", "color": "#00ff00", "kinds": ["points"], "keypoints": ["head", "hand"], "skeleton": [[0, 1]]}
]"##;

fn shapes(version: u64) -> Value {
    let v = version as f64;
    json!({"shapes": [
        {"label": "car", "kind": "rectangle", "points": [[1.0 + v, 2.0], [30.0, 20.0 + v]], "attributes": {"colour": "red"}},
        {"label": "car", "kind": "polygon", "points": [[5.0, 5.0], [25.0, 5.0 + v], [15.0, 30.0]]},
        {"label": "person", "kind": "points", "points": [[10.0, 10.0], [12.0 + v, 14.0]]}
    ]})
}

/// Saves shapes on `sha` of `task` over `version`; returns the new version.
pub async fn save(client: &Client, task: u64, sha: &str, version: u64) -> Check<u64> {
    let path = format!("/api/v1/tasks/{task}/images/{sha}/annotations");
    let etag = format!("\"{version}\"");
    let reply = http::send(
        client,
        Method::PUT,
        &path,
        &[("content-type", "application/json"), ("if-match", &etag)],
        Bytes::from(shapes(version + 1).to_string()),
    )
    .await?;
    let saved = http::expect(reply, 200, &format!("PUT {path}"))?.json();
    u64_field(&saved, "version", &path)
}

/// A task action (`claim`, `start`, `submit`, `review`, `accept`, `reject`).
pub async fn act(client: &Client, task: u64, action: &str, body: Value) -> Check<Value> {
    let path = format!("/api/v1/tasks/{task}/{action}");
    http::json(client, Method::POST, &path, body, 200).await
}

async fn upload(client: &Client, bytes: Vec<u8>) -> Check<String> {
    let sha = sha_hex(&bytes);
    let reply = http::send(
        client,
        Method::POST,
        "/api/v1/objects",
        &[("content-type", "application/octet-stream")],
        Bytes::from(bytes),
    )
    .await?;
    if !reply.status.is_success() {
        return Err(format!("upload {sha}: {} {:?}", reply.status, reply.json()));
    }
    let stored = str_field(&reply.json(), "sha256", "upload")?;
    if stored != sha {
        return Err(format!("upload {sha}: the node says {stored}"));
    }
    Ok(sha)
}

async fn create_user(admin: &Client, name: &str, role: &str) -> Check<User> {
    let password = format!("{name}-password-before-the-upgrade");
    let body = json!({"username": name, "password": password, "role": role});
    http::json(admin, Method::POST, "/api/v1/users", body, 201).await?;
    let tokens = http::sign_in(admin, name, &password).await?;
    Ok(User {
        name: name.to_string(),
        password,
        tokens,
    })
}

/// Polls a job until it is no longer running.
pub async fn job_end(client: &Client, id: u64) -> Check<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job = http::get(client, &format!("/api/v1/jobs/{id}"))
            .await?
            .json();
        if job["state"] != "running" {
            return Ok(job);
        }
        if Instant::now() > deadline {
            return Err(format!("job {id} still running after 120 s: {job}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn zip_of(images: &[(String, Vec<u8>)]) -> Check<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in images {
        zip.start_file(name.as_str(), options)
            .and_then(|()| zip.write_all(bytes).map_err(Into::into))
            .map_err(|e| format!("zip: {e}"))?;
    }
    zip.finish().map_err(|e| format!("zip: {e}"))?;
    Ok(out.into_inner())
}

/// Creates everything, as `admin` (`admin_token`) on a cluster whose node addresses are `nodes`.
pub async fn build(nodes: Vec<String>, admin_password: &str) -> Check<World> {
    let node1 = base(&nodes[0]);
    let admin_tokens = http::sign_in(&node1, "admin", admin_password).await?;
    let admin = node1.with_token(admin_tokens.access.clone());
    let mut users = vec![User {
        name: "admin".into(),
        password: admin_password.into(),
        tokens: admin_tokens,
    }];
    for (name, role) in [
        ("mgr", "manager"),
        ("rev", "reviewer"),
        ("ann1", "annotator"),
        ("ann2", "annotator"),
    ] {
        users.push(create_user(&admin, name, role).await?);
    }
    let as_user = |name: &str, node: usize| -> Client {
        let user = users
            .iter()
            .find(|u| u.name == name)
            .expect("a user of the list");
        base(&nodes[node]).with_token(user.tokens.access.clone())
    };
    let (mgr, rev, ann1, ann2) = (
        as_user("mgr", 1),
        as_user("rev", 2),
        as_user("ann1", 0),
        as_user("ann2", 1),
    );

    // Tokens in every state a token can be in.
    let api = http::json(&mgr, Method::POST, "/api/v1/me/tokens", json!({}), 201).await?;
    let api_token = str_field(&api, "token", "API token")?;
    let extra = http::sign_in(&node1, "rev", &users[2].password).await?;
    http::form(&node1, "/oauth/revoke", &[("token", &extra.access)], 200).await?;
    let second = http::sign_in(&node1, "ann1", &users[3].password).await?;
    let path = format!("/api/v1/me/sessions/{}", second.session);
    let reply = http::send(&ann1, Method::DELETE, &path, &[], Bytes::new()).await?;
    http::expect(reply, 204, &format!("DELETE {path}"))?;
    let mut refused = Vec::new();
    for (name, change) in [("gone", Some(json!({"disabled": true}))), ("del", None)] {
        let user = create_user(&admin, name, "annotator").await?;
        let path = format!("/api/v1/users/{name}");
        match change {
            Some(body) => {
                http::json(&admin, Method::PATCH, &path, body, 200).await?;
            }
            None => {
                let reply = http::send(&admin, Method::DELETE, &path, &[], Bytes::new()).await?;
                http::expect(reply, 204, &format!("DELETE {path}"))?;
            }
        }
        let status = refused_status(&node1, &user.name, &user.password).await?;
        refused.push((user.name, user.password, status));
    }

    // Objects through every node; dataset A keeps six, B is made and deleted (its images
    // released), C comes from an import job.
    let mut objects = Vec::new();
    for seed in 0..9u64 {
        let bytes = png(48 + seed as u32 * 4, 40, 0x5eed_0000 + seed);
        let uploader = base(&nodes[seed as usize % 3]).with_token(users[0].tokens.access.clone());
        objects.push(upload(&uploader, bytes).await?);
    }
    let a = u64_field(
        &http::json(
            &mgr,
            Method::POST,
            "/api/v1/datasets",
            json!({"name": "street"}),
            201,
        )
        .await?,
        "id",
        "dataset A",
    )?;
    let images: Vec<Value> = objects[..6]
        .iter()
        .enumerate()
        .map(|(i, sha)| json!({"sha256": sha, "name": format!("cam1/{i:04}.png")}))
        .collect();
    let path = format!("/api/v1/datasets/{a}/images");
    http::json(&mgr, Method::POST, &path, json!({"images": images}), 200).await?;
    let path = format!("/api/v1/datasets/{a}");
    http::json(
        &mgr,
        Method::PATCH,
        &path,
        json!({"name": "street scenes"}),
        200,
    )
    .await?;
    let b = u64_field(
        &http::json(
            &mgr,
            Method::POST,
            "/api/v1/datasets",
            json!({"name": "scratch"}),
            201,
        )
        .await?,
        "id",
        "dataset B",
    )?;
    let images: Vec<Value> = objects[5..9]
        .iter()
        .map(|sha| json!({"sha256": sha}))
        .collect();
    let path = format!("/api/v1/datasets/{b}/images");
    http::json(&mgr, Method::POST, &path, json!({"images": images}), 200).await?;
    let path = format!("/api/v1/datasets/{b}/images/remove");
    http::json(
        &mgr,
        Method::POST,
        &path,
        json!({"images": [objects[8]]}),
        200,
    )
    .await?;
    let d = u64_field(
        &http::json(
            &mgr,
            Method::POST,
            "/api/v1/datasets",
            json!({"name": "doomed"}),
            201,
        )
        .await?,
        "id",
        "dataset D",
    )?;
    let path = format!("/api/v1/datasets/{d}/images");
    http::json(
        &mgr,
        Method::POST,
        &path,
        json!({"images": [{"sha256": objects[7]}]}),
        200,
    )
    .await?;
    let path = format!("/api/v1/datasets/{d}");
    let reply = http::send(&mgr, Method::DELETE, &path, &[], Bytes::new()).await?;
    http::expect(reply, 204, &format!("DELETE {path}"))?;

    let c = u64_field(
        &http::json(
            &mgr,
            Method::POST,
            "/api/v1/datasets",
            json!({"name": "imported"}),
            201,
        )
        .await?,
        "id",
        "dataset C",
    )?;
    let files: Vec<(String, Vec<u8>)> = (0..3u64)
        .map(|i| (format!("batch/img-{i}.png"), png(64, 48, 0x1a20_0000 + i)))
        .chain([("batch/dup.png".to_string(), png(48, 40, 0x5eed_0000))])
        .collect();
    for (_, bytes) in &files {
        let sha = sha_hex(bytes);
        if !objects.contains(&sha) {
            objects.push(sha);
        }
    }
    let path = format!("/api/v1/datasets/{c}/imports?filename=batch.zip");
    let reply = http::send(&mgr, Method::POST, &path, &[], Bytes::from(zip_of(&files)?)).await?;
    let import = u64_field(&http::expect(reply, 202, &path)?.json(), "id", "import job")?;
    let job = job_end(&mgr, import).await?;
    if job["state"] != "succeeded" {
        return Err(format!("the import job did not succeed: {job}"));
    }

    // An annotation set with labels, a second one for the pool, reviewers.
    let path = format!("/api/v1/datasets/{a}/annotation-sets");
    let labels: Value = serde_json::from_str(LABELS).map_err(|e| e.to_string())?;
    let set = u64_field(
        &http::json(
            &mgr,
            Method::POST,
            &path,
            json!({"name": "v1", "labels": labels}),
            201,
        )
        .await?,
        "id",
        "annotation set",
    )?;
    let pool_set = u64_field(
        &http::json(
            &mgr,
            Method::POST,
            &path,
            json!({"name": "pool", "labels": labels}),
            201,
        )
        .await?,
        "id",
        "pool set",
    )?;
    for s in [set, pool_set] {
        let path = format!("/api/v1/annotation-sets/{s}");
        http::json(
            &mgr,
            Method::PATCH,
            &path,
            json!({"reviewers": ["rev"]}),
            200,
        )
        .await?;
    }
    let path = format!("/api/v1/annotation-sets/{set}/tasks/split");
    let split = json!({"chunk_size": 2, "assignees": ["ann1", "ann2"]});
    let ids = http::json(&mgr, Method::POST, &path, split, 201).await?;
    let path = format!("/api/v1/annotation-sets/{pool_set}/tasks/split");
    let pool = http::json(&mgr, Method::POST, &path, json!({"chunk_size": 3}), 201).await?;
    let mut tasks = Vec::new();
    for id in ids["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(pool["tasks"].as_array().into_iter().flatten())
    {
        let id = id.as_u64().ok_or(format!("a task id {id}"))?;
        let detail = http::get(&mgr, &format!("/api/v1/tasks/{id}"))
            .await?
            .json();
        let shas: Vec<String> = detail["images"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["sha256"].as_str().map(str::to_string))
            .collect();
        tasks.push((id, shas, detail["assignee"].as_str().map(str::to_string)));
    }
    let of = |who: &str| -> Vec<(u64, Vec<String>)> {
        tasks
            .iter()
            .filter(|t| t.2.as_deref() == Some(who))
            .map(|t| (t.0, t.1.clone()))
            .collect()
    };
    let (mine1, mine2) = (of("ann1"), of("ann2"));
    if mine1.len() < 2 || mine2.is_empty() {
        return Err(format!("the split gave ann1 {mine1:?} and ann2 {mine2:?}"));
    }

    // ann1's first task: three versions, submit, review, reject, comments, rework, accept.
    let (t1, shas1) = &mine1[0];
    act(&ann1, *t1, "start", json!({})).await?;
    let mut v = 0;
    for _ in 0..3 {
        v = save(&ann1, *t1, &shas1[0], v).await?;
    }
    save(&ann1, *t1, &shas1[1], 0).await?;
    act(&ann1, *t1, "submit", json!({})).await?;
    act(&rev, *t1, "review", json!({})).await?;
    act(
        &rev,
        *t1,
        "reject",
        json!({"reason": "the second car's box is loose"}),
    )
    .await?;
    let comments = format!("/api/v1/tasks/{t1}/comments");
    let pin = json!({"sha256": shas1[0], "x": 12.5, "y": 20, "text": "box is loose"});
    let thread = u64_field(
        &http::json(&rev, Method::POST, &comments, pin, 201).await?,
        "id",
        "comment",
    )?;
    let answer = json!({"parent": thread, "text": "fixed it"});
    http::json(&ann1, Method::POST, &comments, answer, 201).await?;
    let other = json!({"sha256": shas1[1], "x": 3, "y": 4, "text": "label the person too"});
    http::json(&rev, Method::POST, &comments, other, 201).await?;
    let resolve = format!("/api/v1/comments/{thread}/resolve");
    http::json(&rev, Method::POST, &resolve, json!({}), 200).await?;
    act(&ann1, *t1, "start", json!({})).await?;
    save(&ann1, *t1, &shas1[0], v).await?;
    act(&ann1, *t1, "submit", json!({})).await?;
    act(&rev, *t1, "review", json!({})).await?;
    act(&rev, *t1, "accept", json!({})).await?;

    // ann2's task submitted and waiting; ann1's second task in progress; a pool task claimed.
    let (t2, shas2) = &mine2[0];
    act(&ann2, *t2, "start", json!({})).await?;
    save(&ann2, *t2, &shas2[0], 0).await?;
    act(&ann2, *t2, "submit", json!({})).await?;
    let (t3, shas3) = &mine1[1];
    act(&ann1, *t3, "start", json!({})).await?;
    save(&ann1, *t3, &shas3[0], 0).await?;
    let pool_task = tasks
        .iter()
        .find(|t| t.2.is_none())
        .map(|t| t.0)
        .ok_or("no pool task")?;
    act(&ann2, pool_task, "claim", json!({})).await?;

    // Pre-annotations from a COCO import, then an export of everything with its images.
    // On an image nobody saved (ann2's second one), where the pre-annotation is what it reads.
    let unsaved = shas2.get(1).ok_or("ann2's task has one image")?;
    let index = objects
        .iter()
        .position(|sha| sha == unsaved)
        .ok_or("ann2's image is not one of the uploads")?;
    let coco = json!({
        "images": [{"id": 1, "file_name": format!("cam1/{index:04}.png"), "width": 48 + index * 4, "height": 40}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 12]}],
        "categories": [{"id": 1, "name": "car"}]
    });
    let path = format!("/api/v1/annotation-sets/{set}/annotation-imports?format=coco");
    let reply = http::send(
        &mgr,
        Method::POST,
        &path,
        &[("content-type", "application/json")],
        Bytes::from(coco.to_string()),
    )
    .await?;
    let annotation_import = u64_field(
        &http::expect(reply, 202, &path)?.json(),
        "id",
        "annotation import",
    )?;
    let job = job_end(&mgr, annotation_import).await?;
    if job["state"] != "succeeded" {
        return Err(format!("the annotation import did not succeed: {job}"));
    }
    let path = format!("/api/v1/annotation-sets/{set}/exports");
    let options = json!({"format": "coco", "include_images": true, "only_accepted": false});
    let export = u64_field(
        &http::json(&mgr, Method::POST, &path, options, 202).await?,
        "id",
        "export",
    )?;
    let job = job_end(&mgr, export).await?;
    let url = job["result"]["url"]
        .as_str()
        .ok_or(format!("the export has no download URL: {job}"))?
        .to_string();
    let zip = http::follow(&mgr, &nodes, &url).await?;
    let export = (url, sha_hex(&zip.body));

    let detail = http::get(&ann1, &format!("/api/v1/tasks/{t3}"))
        .await?
        .json();
    let object_url = detail["images"][0]["url"]
        .as_str()
        .ok_or(format!("no presigned URL in {detail}"))?
        .to_string();

    Ok(World {
        nodes,
        users,
        api_token,
        revoked: extra.access,
        ended: second.access,
        refused,
        objects,
        datasets: vec![a, b, c],
        deleted_datasets: vec![d],
        sets: vec![set, pool_set],
        tasks: tasks.into_iter().map(|t| (t.0, t.1)).collect(),
        jobs: vec![import, annotation_import, export_id(&job)?],
        export,
        object_url,
        open_task: *t3,
    })
}

/// The status a password grant answers with for a user who may not sign in (a 2xx is a finding).
pub async fn refused_status(client: &Client, name: &str, password: &str) -> Check<u16> {
    let form = format!(
        "grant_type=password&username={}&password={}",
        tessera_client::form_encode(name),
        tessera_client::form_encode(password)
    );
    let reply = http::send(
        client,
        Method::POST,
        "/oauth/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        Bytes::from(form),
    )
    .await?;
    if reply.status.is_success() {
        return Err(format!(
            "{name} signed in on {}, but was disabled or deleted",
            client.base()
        ));
    }
    Ok(reply.status.as_u16())
}

fn export_id(job: &Value) -> Check<u64> {
    u64_field(job, "id", "export job")
}
