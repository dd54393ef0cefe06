//! Every HTTP route in one table: the router and the OpenAPI document are both built from it,
//! so the document cannot drift from what the server answers.

use axum::routing::{delete, get, patch, post, put, MethodRouter};
use serde_json::{json, Map, Value};

use crate::access::{self, Access};
use crate::{
    annotation_import, annotation_sets, annotations, cluster_routes, comments, datasets, export,
    import, jobs, metrics, oauth, objects, paging, quality, sessions, tasks, users, webhooks,
    AppState,
};

pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
    handler: MethodRouter<AppState>,
    body: Option<BodyDoc>,
    query: Option<QueryDoc>,
    /// The success status and the JSON Schema of its body, where published.
    response: Option<(u16, Value)>,
}

/// How a handler parses its query string.
type ParseQuery = fn(&str) -> Result<(), String>;

/// The query string a route takes, as an example a test parses with the handler's own type;
/// the document lists its parameters.
struct QueryDoc {
    example: &'static str,
    /// The handler's query type, published as `x-rust-query-type`.
    rust_type: &'static str,
    /// Also decides which parameters the document marks required: those without which the
    /// example no longer parses.
    parse: ParseQuery,
}

/// How a handler parses its JSON body (only whether it accepts it matters here).
type ParseBody = fn(&[u8]) -> Result<(), crate::ApiError>;

/// A request body as the OpenAPI document describes it. JSON bodies carry an example that a
/// test parses with the handler's own request type, so the example cannot drift from the code.
struct BodyDoc {
    media_type: &'static str,
    description: &'static str,
    example: Option<Value>,
    /// The handler's parse of a JSON body (`None` for raw bodies).
    parse: Option<ParseBody>,
    rust_type: &'static str,
}

impl Route {
    /// A JSON body parsed as `T`, with an example.
    fn json<T: serde::de::DeserializeOwned>(mut self, example: Value) -> Route {
        self.body = Some(BodyDoc {
            media_type: "application/json",
            description: "JSON; unknown fields are refused",
            example: Some(example),
            parse: Some(|bytes| crate::error::parse_json::<T>(bytes).map(|_| ())),
            rust_type: std::any::type_name::<T>(),
        });
        self
    }

    /// Query parameters parsed as `T`, shown by an example (`limit=100&cursor=…`).
    fn query<T: serde::de::DeserializeOwned>(mut self, example: &'static str) -> Route {
        self.query = Some(QueryDoc {
            example,
            rust_type: std::any::type_name::<T>(),
            parse: |q| {
                let uri: axum::http::Uri = format!("/?{q}").parse().map_err(|e| format!("{e}"))?;
                axum::extract::Query::<T>::try_from_uri(&uri)
                    .map(|_| ())
                    .map_err(|e| e.body_text())
            },
        });
        self
    }

    /// The success response: its status and the JSON Schema of its body.
    fn responds(mut self, status: u16, schema: Value) -> Route {
        self.response = Some((status, schema));
        self
    }

    /// A raw body streamed by the handler (a file).
    fn raw(mut self, description: &'static str) -> Route {
        self.body = Some(BodyDoc {
            media_type: "application/octet-stream",
            description,
            example: None,
            parse: None,
            rust_type: "",
        });
        self
    }
}

fn route(
    method: &'static str,
    path: &'static str,
    access: Access,
    summary: &'static str,
    handler: MethodRouter<AppState>,
) -> Route {
    Route {
        method,
        path,
        summary,
        access,
        handler,
        body: None,
        query: None,
        response: None,
    }
}

/// The table.
pub fn routes() -> Vec<Route> {
    use Access::*;
    vec![
        route(
            "get",
            "/objects/{sha}",
            ManagerOrPresigned,
            "An object's bytes (ETag, If-None-Match, Range; HEAD too); ?size=thumb or ?size=preview for a thumbnail (256 px) or preview (1280 px) in the displayed frame, made on first request",
            get(objects::serve),
        ),
        route(
            "post",
            "/api/v1/objects",
            Manager,
            "Upload an image (raw body); 201, or 200 if already stored",
            post(objects::upload),
        )
        .raw("the image bytes (JPEG, PNG, WebP, GIF, BMP or TIFF)"),
        route(
            "get",
            "/api/v1/objects/{sha}",
            Manager,
            "An object's record, with a presigned URL",
            get(objects::metadata),
        ),
        route(
            "get",
            "/api/v1/cluster",
            Admin,
            "Nodes, shards, leaders and replication state",
            get(cluster_routes::status),
        ),
        route(
            "post",
            "/api/v1/cluster/init",
            InitToken,
            "Initialise a new cluster (idempotent)",
            post(cluster_routes::init),
        ),
        route(
            "get",
            "/api/v1/users",
            Admin,
            "Users, paged (limit, cursor)",
            get(users::list),
        )
        .query::<paging::Page>("limit=100&cursor=mia"),
        route(
            "post",
            "/api/v1/users",
            Admin,
            "Create a user",
            post(users::create),
        )
        .json::<users::NewUser>(json!({"username": "mia", "password": "a-long-password", "role": "manager"})),
        route(
            "get",
            "/api/v1/users/{name}",
            AdminOrSelf,
            "A user (admins, or the user themself)",
            get(users::get),
        ),
        route(
            "patch",
            "/api/v1/users/{name}",
            Admin,
            "Change password, role or disabled",
            patch(users::update),
        )
        .json::<users::Change>(json!({"password": "another-long-password", "role": "reviewer", "disabled": false})),
        route(
            "delete",
            "/api/v1/users/{name}",
            Admin,
            "Delete a user",
            delete(users::delete),
        ),
        route(
            "get",
            "/api/v1/me",
            SignedIn,
            "The signed-in user",
            get(users::me),
        ),
        route(
            "post",
            "/api/v1/me/tokens",
            SignedIn,
            "A long-lived API token",
            post(oauth::api_token),
        ),
        route(
            "get",
            "/api/v1/me/sessions",
            SignedIn,
            "The caller's live sessions (sign-ins and API tokens): opened when, where, last refreshed",
            get(sessions::list_mine),
        )
        .responds(200, sessions::session_list_schema()),
        route(
            "delete",
            "/api/v1/me/sessions",
            SignedIn,
            "Sign out everywhere: end every session of the caller, this one included",
            delete(sessions::end_all_mine),
        )
        .responds(200, ended_schema("ended")),
        route(
            "delete",
            "/api/v1/me/sessions/{id}",
            SignedIn,
            "End one of the caller's sessions (its access, refresh and API tokens stop working on every node)",
            delete(sessions::end_mine),
        ),
        route(
            "put",
            "/api/v1/me/password",
            SignedIn,
            "Change your own password (proving the current one); every other session of yours ends",
            put(sessions::change_password),
        )
        .json::<sessions::PasswordChange>(json!({"current_password": "a-long-password", "new_password": "another-long-password"}))
        .responds(200, ended_schema("ended_sessions")),
        route(
            "get",
            "/api/v1/users/{name}/sessions",
            AdminOrSelf,
            "A user's live sessions (admins, or the user themself)",
            get(sessions::list_of),
        )
        .responds(200, sessions::session_list_schema()),
        route(
            "delete",
            "/api/v1/users/{name}/sessions",
            AdminOrSelf,
            "End every session of a user",
            delete(sessions::end_all_of),
        )
        .responds(200, ended_schema("ended")),
        route(
            "delete",
            "/api/v1/users/{name}/sessions/{id}",
            AdminOrSelf,
            "End one session of a user",
            delete(sessions::end_of),
        ),
        route(
            "get",
            "/api/v1/datasets",
            Manager,
            "Datasets, paged (limit, cursor)",
            get(datasets::list),
        )
        .query::<paging::Page>("limit=100&cursor=12"),
        route(
            "post",
            "/api/v1/datasets",
            Manager,
            "Create a dataset",
            post(datasets::create),
        )
        .json::<datasets::NameBody>(json!({"name": "street scenes"})),
        route(
            "get",
            "/api/v1/datasets/{id}",
            Manager,
            "A dataset",
            get(datasets::get),
        ),
        route(
            "patch",
            "/api/v1/datasets/{id}",
            Manager,
            "Rename a dataset",
            patch(datasets::rename),
        )
        .json::<datasets::NameBody>(json!({"name": "street scenes 2"})),
        route(
            "delete",
            "/api/v1/datasets/{id}",
            Manager,
            "Delete a dataset and release its images",
            delete(datasets::delete),
        ),
        route(
            "get",
            "/api/v1/datasets/{id}/images",
            Manager,
            "A dataset's images with presigned URLs, paged",
            get(datasets::images),
        )
        .query::<datasets::ImagesQuery>("limit=100&cursor=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08&annotation_set=1&annotated=true&label=car"),
        route(
            "post",
            "/api/v1/datasets/{id}/images",
            Manager,
            "Add uploaded images by SHA-256",
            post(datasets::add_images),
        )
        .json::<datasets::AddBody>(json!({"images": [{"sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "name": "cam1/0001.jpg"}]})),
        route(
            "post",
            "/api/v1/datasets/{id}/images/remove",
            Manager,
            "Remove images",
            post(datasets::remove),
        )
        .json::<datasets::RemoveBody>(json!({"images": ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]})),
        route(
            "post",
            "/api/v1/datasets/{id}/annotation-sets",
            Manager,
            "Create an annotation set (label schema) on a dataset",
            post(annotation_sets::create),
        )
        .json::<annotation_sets::NewSet>(json!({"name": "v1", "reviewers": [], "labels": [{"name": "car", "color": "#ff0000", "kinds": ["rectangle", "polygon"], "attributes": [{"name": "colour", "type": "select", "options": ["red", "blue"], "required": false}]}, {"name": "person", "color": "#00ff00", "kinds": ["points"], "keypoints": ["head", "hand"], "skeleton": [[0, 1]]}]})),
        route(
            "get",
            "/api/v1/annotation-sets",
            Manager,
            "Annotation sets, paged (dataset, limit, cursor)",
            get(annotation_sets::list),
        )
        .query::<annotation_sets::Page>("dataset=1&limit=100&cursor=3"),
        route(
            "get",
            "/api/v1/annotation-sets/{id}",
            Manager,
            "An annotation set",
            get(annotation_sets::get),
        ),
        route(
            "patch",
            "/api/v1/annotation-sets/{id}",
            Manager,
            "Rename or change the label schema",
            patch(annotation_sets::update),
        )
        .json::<annotation_sets::Change>(json!({"name": "v2", "reviewers": ["rev1"]})),
        route(
            "delete",
            "/api/v1/annotation-sets/{id}",
            Manager,
            "Delete an annotation set",
            delete(annotation_sets::delete),
        ),
        route(
            "post",
            "/api/v1/annotation-sets/{id}/tasks/split",
            Manager,
            "Split into tasks (chunk_size, overlap, assignees or pool)",
            post(tasks::split),
        )
        .json::<tasks::SplitBody>(json!({"chunk_size": 50, "overlap": 2, "assignees": ["ann1", "ann2"]})),
        route(
            "get",
            "/api/v1/annotation-sets/{id}/tasks",
            Reviewer,
            "Tasks of an annotation set, paged (state, limit, cursor)",
            get(tasks::list),
        )
        .query::<tasks::Page>("state=submitted&limit=100&cursor=40"),
        route(
            "get",
            "/api/v1/me/tasks",
            SignedIn,
            "The caller's tasks",
            get(tasks::mine),
        )
        .query::<tasks::Page>("state=in_progress&limit=100&cursor=40"),
        route(
            "get",
            "/api/v1/review/tasks",
            Reviewer,
            "The review queue: submitted tasks and those in review by the caller, with quality \
             figures (?state=, ?order=agreement: least agreed first)",
            get(tasks::review_queue),
        )
        .query::<tasks::ReviewPage>("state=submitted&limit=100&cursor=40&order=agreement"),
        route(
            "get",
            "/api/v1/pool/tasks",
            SignedIn,
            "Unassigned tasks to claim",
            get(tasks::pool),
        )
        .query::<tasks::Page>("limit=100&cursor=40"),
        route(
            "get",
            "/api/v1/tasks/{id}",
            SignedIn,
            "A task with presigned image URLs (its assignee, pool tasks, reviewers and up)",
            get(tasks::get),
        ),
        route(
            "post",
            "/api/v1/tasks/{id}/reassign",
            Manager,
            "Give a task to someone else or back to the pool",
            post(tasks::reassign),
        )
        .json::<tasks::ReassignBody>(json!({"assignee": "ann2"})),
        route(
            "post",
            "/api/v1/tasks/{id}/{action}",
            SignedIn,
            "claim, start, submit (assignee); review, accept, reject (reviewers and up); archive (managers)",
            post(tasks::act),
        )
        .json::<tasks::ActBody>(json!({"reason": "boxes too loose (only for reject)"})),
        route(
            "get",
            "/api/v1/tasks/{id}/images/{sha}/annotations",
            SignedIn,
            "The current version of an image's shapes in a task (ETag)",
            get(annotations::get),
        ),
        route(
            "put",
            "/api/v1/tasks/{id}/images/{sha}/annotations",
            SignedIn,
            "Save shapes (If-Match: the edited version; 412 if stale)",
            put(annotations::put),
        )
        .json::<annotations::Body>(json!({"shapes": [{"label": "car", "kind": "rectangle", "points": [[10, 20], [200, 120]], "attributes": {"colour": "red"}}, {"label": "car", "kind": "rotated_rectangle", "points": [[50, 50], [90, 70]], "angle": 30, "occluded": true}]})),
        route(
            "patch",
            "/api/v1/tasks/{id}/images/{sha}/annotations",
            SignedIn,
            "Save what changed since the edited version (If-Match; 412 if stale): splices [at, remove, [shapes]] by position in it",
            patch(annotations::patch),
        )
        .json::<annotations::PatchBody>(json!({"base_len": 2, "splices": [[1, 1, [{"label": "car", "kind": "rectangle", "points": [[12, 20], [200, 120]]}]], [2, 0, [{"label": "car", "kind": "rectangle", "points": [[1, 1], [9, 9]], "occluded": true}]]]})),
        route(
            "get",
            "/api/v1/tasks/{id}/images/{sha}/annotations/history",
            SignedIn,
            "Every saved version, who and when",
            get(annotations::history),
        ),
        route(
            "get",
            "/api/v1/annotation-sets/{id}/stats",
            Reviewer,
            "Progress and label statistics, maintained incrementally",
            get(annotation_sets::stats),
        ),
        route(
            "get",
            "/api/v1/annotation-sets/{id}/review-stats",
            Reviewer,
            "Review and rework figures per annotator and per reviewer (durations in ms)",
            get(annotation_sets::review_stats),
        )
        .responds(200, annotation_sets::review_stats_schema()),
        route(
            "put",
            "/api/v1/annotation-sets/{id}/quality",
            Manager,
            "Set the quality policy: honeypot fraction (0-0.5), consensus quorum, matching \
             thresholds, review_below",
            put(quality::set_policy),
        )
        .json::<tessera_domain::quality::Policy>(json!({"honeypot_fraction": 0.1, "quorum": 2, "min_similarity": 0.5, "oks_sigma": 0.1, "review_below": 0.6})),
        route(
            "get",
            "/api/v1/annotation-sets/{id}/quality",
            Reviewer,
            "Quality report: honeypot scores and consensus agreement per annotator and task, \
             least agreed images, images pending a recompute",
            get(quality::report),
        ),
        route(
            "get",
            "/api/v1/annotation-sets/{id}/quality/images/{sha}",
            Reviewer,
            "An image's versions, agreement, consensus shapes and reference",
            get(quality::image),
        ),
        route(
            "put",
            "/api/v1/annotation-sets/{id}/quality/images/{sha}/consensus",
            Reviewer,
            "Pin an image's consensus in a chunk: one annotator's version (task) or edited shapes",
            put(quality::pin),
        )
        .json::<quality::PinBody>(json!({"chunk": 3, "task": 12})),
        route(
            "delete",
            "/api/v1/annotation-sets/{id}/quality/images/{sha}/consensus",
            Reviewer,
            "Back to the computed consensus (?chunk=)",
            delete(quality::unpin),
        )
        .query::<quality::ChunkQuery>("chunk=3"),
        route(
            "post",
            "/api/v1/webhooks",
            Manager,
            "Register a webhook (url, events, annotation_set); answers its signing secret once",
            post(webhooks::create),
        )
        .json::<webhooks::NewHook>(json!({"url": "https://receiver.example/tessera", "events": ["task.submitted", "annotation.saved", "job.failed"], "annotation_set": 1})),
        route(
            "get",
            "/api/v1/webhooks",
            Manager,
            "Webhooks (without their secrets)",
            get(webhooks::list),
        ),
        route(
            "get",
            "/api/v1/webhooks/{id}",
            Manager,
            "A webhook with its delivery log (status, latency, attempts) and waiting deliveries",
            get(webhooks::get),
        ),
        route(
            "delete",
            "/api/v1/webhooks/{id}",
            Manager,
            "Delete a webhook, its queue and its log",
            delete(webhooks::delete),
        ),
        route(
            "get",
            "/api/v1/annotation-sets/{id}/ground-truth",
            Reviewer,
            "The set's ground-truth images (without shapes)",
            get(quality::list_references),
        ),
        route(
            "post",
            "/api/v1/annotation-sets/{id}/ground-truth",
            Manager,
            "Mark images as ground truth: drawn shapes, an accepted task, or imported annotations",
            post(quality::set_references),
        )
        .json::<quality::NewReferences>(json!({"images": [{"image": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "shapes": [{"label": "car", "kind": "rectangle", "points": [[10, 10], [60, 40]]}]}]})),
        route(
            "get",
            "/api/v1/annotation-sets/{id}/ground-truth/{sha}",
            Reviewer,
            "One ground-truth image with its shapes",
            get(quality::get_reference),
        ),
        route(
            "delete",
            "/api/v1/annotation-sets/{id}/ground-truth/{sha}",
            Manager,
            "Remove an image's ground truth (its scores go with it)",
            delete(quality::clear_reference),
        ),
        route(
            "get",
            "/api/v1/tasks/{id}/comments",
            SignedIn,
            "A task's review threads (assignee, reviewers and up)",
            get(comments::list),
        ),
        route(
            "post",
            "/api/v1/tasks/{id}/comments",
            SignedIn,
            "Start a thread at an image point, or answer one",
            post(comments::add),
        )
        .json::<comments::NewComment>(json!({"sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "x": 15, "y": 25, "text": "box too loose"})),
        route(
            "post",
            "/api/v1/comments/{id}/resolve",
            Reviewer,
            "Resolve a thread",
            post(comments::resolve),
        ),
        route(
            "post",
            "/api/v1/datasets/{id}/imports",
            Manager,
            "Import an image, archive (zip, tar, tar.gz, tar.zst), video, PDF or office document \
             (raw body; ?filename=&video_fps=&pdf_dpi=) as a job",
            post(import::start),
        )
        .query::<import::Options>("filename=photos.zip&video_fps=1&pdf_dpi=150")
        .raw("the file: an image, zip, tar, tar.gz, tar.zst, video, PDF or office document"),
        route(
            "post",
            "/api/v1/annotation-sets/{id}/annotation-imports",
            Manager,
            "Import COCO, VOC, YOLO or CVAT annotations as pre-annotations \
             (raw zip/JSON/XML body; ?format=&create_labels=) as a job",
            post(annotation_import::start),
        )
        .query::<annotation_import::Options>("format=coco&create_labels=true")
        .raw("a zip of a COCO, VOC, YOLO or CVAT dataset, or a bare COCO JSON / CVAT XML file"),
        route(
            "post",
            "/api/v1/annotation-sets/{id}/exports",
            Manager,
            "Start an export job (coco, voc, yolo, yolo-segment, yolo-pose, yolo-darknet, cvat, labelme, csv)",
            post(export::start),
        )
        .json::<export::Options>(json!({"format": "coco", "include_images": true, "only_accepted": true, "splits": {"train": 0.8, "val": 0.2}, "seed": 1})),
        route(
            "get",
            "/api/v1/jobs",
            Manager,
            "Import and export jobs (?dataset= or ?annotation_set=), paged",
            get(jobs::list),
        )
        .query::<jobs::ListQuery>("annotation_set=1&limit=100&cursor=7"),
        route(
            "get",
            "/api/v1/jobs/{id}",
            Manager,
            "A job's state, progress, skipped files and result",
            get(jobs::get),
        ),
        route(
            "post",
            "/api/v1/jobs/{id}/cancel",
            Manager,
            "Cancel a running job",
            post(jobs::cancel),
        ),
        route(
            "get",
            "/api/v1/jobs/{id}/download",
            ManagerOrPresigned,
            "A finished export's zip (Range supported; other nodes redirect to the one holding it)",
            get(jobs::download),
        ),
        route(
            "post",
            "/oauth/token",
            Anyone,
            "OAuth2 token endpoint (password, refresh_token grants)",
            post(oauth::token),
        ),
        route(
            "post",
            "/oauth/revoke",
            Anyone,
            "Revoke a token (RFC 7009)",
            post(oauth::revoke),
        ),
        route(
            "get",
            "/api/v1/openapi.json",
            Anyone,
            "This document",
            get(openapi_json),
        ),
        route(
            "get",
            "/healthz",
            Anyone,
            "The process is alive",
            get(cluster_routes::healthz),
        ),
        route(
            "get",
            "/readyz",
            Anyone,
            "Every group hosted here has a leader",
            get(cluster_routes::readyz),
        ),
        route(
            "get",
            "/metrics",
            Anyone,
            "Prometheus metrics",
            get(metrics::render),
        ),
    ]
}

/// Adds every route of the table to `router`.
/// Mounts every route behind the access check of its table entry (see [`access::enforce`]).
pub fn mount(mut router: axum::Router<AppState>, state: &AppState) -> axum::Router<AppState> {
    for r in routes() {
        let level = r.access;
        let check = axum::middleware::from_fn_with_state(
            state.clone(),
            move |axum::extract::State(state): axum::extract::State<AppState>,
                  request: axum::extract::Request,
                  next: axum::middleware::Next| {
                access::enforce(state, level, request, next)
            },
        );
        let mut handler = r.handler;
        if r.body.as_ref().is_some_and(|b| b.parse.is_some()) {
            handler = handler.route_layer(axum::middleware::from_fn(
                crate::body_limit::refuse_oversized,
            ));
        }
        router = router.route(r.path, handler.route_layer(check));
    }
    router
}

/// `{"<field>": <how many sessions ended>}`.
fn ended_schema(field: &str) -> Value {
    json!({
        "type": "object",
        "required": [field],
        "properties": { field: { "type": "integer", "description": "sessions ended" } }
    })
}

/// The OpenAPI 3 document of the table.
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for r in routes() {
        let mut params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        if let Some(query) = &r.query {
            for pair in query.example.split('&') {
                let (name, example) = pair.split_once('=').unwrap_or((pair, ""));
                let others: Vec<&str> = query.example.split('&').filter(|p| *p != pair).collect();
                let required = (query.parse)(&others.join("&")).is_err();
                params.push(json!({ "name": name, "in": "query", "required": required, "schema": { "type": "string" }, "example": example }));
            }
        }
        let security = match r.access {
            Access::Anyone => json!([]),
            Access::ManagerOrPresigned => json!([{ "bearer": [] }, {}]),
            _ => json!([{ "bearer": [] }]),
        };
        let op = json!({
            "summary": r.summary,
            "description": format!("Access: {}.", r.access.describe()),
            "x-tessera-access": r.access.key(),
            "parameters": params,
            "security": security,
            "responses": {
                "default": {
                    "description": "JSON; errors are {\"error\": {\"code\", \"message\"}}",
                }
            },
        });
        let mut op = op;
        if let Some((status, schema)) = &r.response {
            op["responses"][status.to_string()] = json!({
                "description": "success",
                "content": { "application/json": { "schema": schema } },
            });
        }
        if let Some(query) = &r.query {
            op["x-rust-query-type"] = json!(query.rust_type);
        }
        if let Some(body) = &r.body {
            let mut content = json!({ "schema": { "type": if body.parse.is_some() { "object" } else { "string" } } });
            if let Some(example) = &body.example {
                content["example"] = example.clone();
                content["x-rust-type"] = json!(body.rust_type);
            } else {
                content["schema"]["format"] = json!("binary");
            }
            op["requestBody"] = json!({
                "required": true,
                "description": body.description,
                "content": { body.media_type: content },
            });
        }
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": { "title": "Tessera", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "From POST /oauth/token" }
            }
        },
    })
}

async fn openapi_json() -> axum::Json<Value> {
    axum::Json(openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_examples_parse_as_their_handlers_parse() {
        let mut checked = 0;
        for r in routes() {
            let Some(BodyDoc {
                example: Some(example),
                parse: Some(parse),
                ..
            }) = &r.body
            else {
                continue;
            };
            if let Err(e) = parse(example.to_string().as_bytes()) {
                panic!(
                    "{} {}: the example does not parse: {}",
                    r.method, r.path, e.message
                );
            }
            checked += 1;
        }
        assert!(checked >= 14, "only {checked} body examples");
    }

    #[test]
    fn query_examples_parse_as_their_handlers_parse() {
        let mut checked = 0;
        for r in routes() {
            if let Some(q) = &r.query {
                if let Err(e) = (q.parse)(q.example) {
                    panic!(
                        "{} {}: the query example does not parse: {e}",
                        r.method, r.path
                    );
                }
                checked += 1;
            }
        }
        assert!(checked >= 10, "only {checked} query examples");
    }

    #[test]
    fn query_parameters_a_handler_needs_are_marked_required() {
        let doc = openapi();
        let params =
            &doc["paths"]["/api/v1/annotation-sets/{id}/annotation-imports"]["post"]["parameters"];
        let required = |name: &str| {
            params
                .as_array()
                .and_then(|list| list.iter().find(|p| p["name"] == name))
                .map(|p| p["required"].clone())
        };
        assert_eq!(required("format"), Some(json!(true)), "{params}");
        assert_eq!(required("create_labels"), Some(json!(false)), "{params}");
    }

    #[test]
    fn every_route_is_documented_once() {
        let doc = openapi();
        let table = routes();
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(
            documented,
            table.len(),
            "a method+path appears twice in the table"
        );
        for r in &table {
            assert!(
                doc["paths"][r.path][r.method]["summary"].is_string(),
                "{} {}",
                r.method,
                r.path
            );
        }
    }
}
