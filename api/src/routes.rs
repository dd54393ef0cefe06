//! Every HTTP route in one table: the router and the OpenAPI document are both built from it,
//! so the document cannot drift from what the server answers.

use std::collections::BTreeSet;

use axum::routing::{delete, get, patch, post, put, MethodRouter};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::access::{self, Access};
use crate::{
    annotation_import, annotation_sets, annotations, backup, cluster_routes, comments, datasets,
    export, import, jobs, metrics, nodes, oauth, objects, paging, quality, sessions, tasks, users,
    webhooks, AppState,
};

pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
    handler: MethodRouter<AppState>,
    body: Option<BodyDoc>,
    query: Option<QueryDoc>,
    /// The success answers (none listed: 200 with a JSON body).
    answers: Vec<Answer>,
    /// Error statuses beyond those every route of its kind can answer (see [`error_statuses`]).
    errors: &'static [u16],
    /// A request header the route requires: its name, meaning and pattern.
    header: Option<(&'static str, &'static str, &'static str)>,
}

/// A success answer as the document describes it.
struct Answer {
    status: u16,
    /// `None`: no body (204, 304, redirects).
    media_type: Option<&'static str>,
    /// The JSON Schema of the body, where published.
    schema: Option<BodySchema>,
}

/// The schema of a success body.
enum BodySchema {
    /// Written out (a body the handler builds with `json!`).
    Written(Value),
    /// Generated from the type the handler serializes.
    Of(SchemaFn),
    /// `{"items": [...], "next_cursor"}` of the type (see `paging::page`).
    PageOf(SchemaFn),
}

impl BodySchema {
    fn generate(&self, generator: &mut SchemaGenerator) -> Value {
        match self {
            BodySchema::Written(schema) => schema.clone(),
            BodySchema::Of(schema) => schema(generator).to_value(),
            BodySchema::PageOf(item) => json!({
                "type": "object",
                "required": ["items", "next_cursor"],
                "properties": {
                    "items": { "type": "array", "items": item(generator) },
                    "next_cursor": {
                        "type": ["string", "integer", "null"],
                        "description": "?cursor= of the next page; null on the last",
                    },
                },
            }),
        }
    }
}

/// Writes a type's JSON Schema into the generator (a `$ref` to `components/schemas`).
type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// How a handler parses its query string.
type ParseQuery = fn(&str) -> Result<(), String>;

/// The query string a route takes, as an example a test parses with the handler's own type;
/// the document lists its parameters.
struct QueryDoc {
    example: &'static str,
    /// The query type's schema: one parameter per property.
    schema: SchemaFn,
    /// The handler's query type, published as `x-rust-query-type`.
    rust_type: &'static str,
    /// Read by the tests: the example must parse.
    #[cfg_attr(not(test), allow(dead_code))]
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
    /// The handler's parse of a JSON body (`None` for raw and form bodies); read by the tests:
    /// the example must parse.
    #[cfg_attr(not(test), allow(dead_code))]
    parse: Option<ParseBody>,
    rust_type: &'static str,
    /// The body's schema (`None` for raw bodies: any bytes).
    schema: Option<SchemaFn>,
    /// Whether a request without a body is refused.
    required: bool,
}

impl Route {
    /// A JSON body parsed as `T`, with an example.
    fn json<T: serde::de::DeserializeOwned + JsonSchema>(mut self, example: Value) -> Route {
        self.body = Some(BodyDoc {
            media_type: "application/json",
            description: "JSON; unknown fields are refused",
            example: Some(example),
            parse: Some(|bytes| crate::error::parse_json::<T>(bytes).map(|_| ())),
            rust_type: std::any::type_name::<T>(),
            schema: Some(|g| g.subschema_for::<T>()),
            required: true,
        });
        self
    }

    /// A form body (`application/x-www-form-urlencoded`) parsed as `T`.
    fn form<T: serde::de::DeserializeOwned + JsonSchema>(mut self, example: Value) -> Route {
        self.body = Some(BodyDoc {
            media_type: "application/x-www-form-urlencoded",
            description: "a form",
            example: Some(example),
            parse: None,
            rust_type: std::any::type_name::<T>(),
            schema: Some(|g| g.subschema_for::<T>()),
            required: true,
        });
        self
    }

    /// Query parameters parsed as `T`, shown by an example (`limit=100&cursor=…`).
    fn query<T: serde::de::DeserializeOwned + JsonSchema>(
        mut self,
        example: &'static str,
    ) -> Route {
        self.query = Some(QueryDoc {
            example,
            schema: |g| g.root_schema_for::<T>(),
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

    /// The success response: its status and the JSON Schema of its JSON body.
    fn responds(self, status: u16, schema: Value) -> Route {
        self.answer_with(
            status,
            Some("application/json"),
            Some(BodySchema::Written(schema)),
        )
    }

    /// A success answer whose JSON body is a `T`.
    fn returns<T: JsonSchema>(self, status: u16) -> Route {
        let schema = BodySchema::Of(|g| g.subschema_for::<T>());
        self.answer_with(status, Some("application/json"), Some(schema))
    }

    /// 200 with a page of `T`s.
    fn pages<T: JsonSchema>(self) -> Route {
        let schema = BodySchema::PageOf(|g| g.subschema_for::<T>());
        self.answer_with(200, Some("application/json"), Some(schema))
    }

    /// A success answer of the route whose body has no published schema.
    fn answer(self, status: u16, media_type: Option<&'static str>, schema: Option<Value>) -> Route {
        self.answer_with(status, media_type, schema.map(BodySchema::Written))
    }

    fn answer_with(
        mut self,
        status: u16,
        media_type: Option<&'static str>,
        schema: Option<BodySchema>,
    ) -> Route {
        self.answers.push(Answer {
            status,
            media_type,
            schema,
        });
        self
    }

    /// The body may be left out (an empty body means the type's defaults).
    fn body_optional(mut self) -> Route {
        if let Some(body) = &mut self.body {
            body.required = false;
        }
        self
    }

    /// A request header the route requires (428 without it).
    fn header(
        mut self,
        name: &'static str,
        description: &'static str,
        pattern: &'static str,
    ) -> Route {
        self.header = Some((name, description, pattern));
        self
    }

    /// Error statuses particular to the route.
    fn errors(mut self, statuses: &'static [u16]) -> Route {
        self.errors = statuses;
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
            schema: None,
            required: true,
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
        answers: Vec::new(),
        errors: &[],
        header: None,
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
        )
        .answer(200, Some("image/*"), None)
        .answer(206, Some("image/*"), None)
        .answer(304, None, None)
        .errors(&[416]),
        route(
            "post",
            "/api/v1/objects",
            Manager,
            "Upload an image (raw body); 201, or 200 if already stored",
            post(objects::upload),
        )
        .returns::<objects::ObjectView>(201)
        .returns::<objects::ObjectView>(200)
        .errors(&[411, 415])
        .raw("the image bytes (JPEG, PNG, WebP, GIF, BMP or TIFF)"),
        route(
            "get",
            "/api/v1/objects/{sha}",
            Manager,
            "An object's record, with a presigned URL",
            get(objects::metadata),
        )
        .returns::<objects::ObjectView>(200),
        route(
            "get",
            "/api/v1/cluster",
            Admin,
            "Nodes, shards, leaders and replication state",
            get(cluster_routes::status),
        )
        .responds(200, cluster_routes::status_schema()),
        route(
            "post",
            "/api/v1/cluster/restart",
            Admin,
            "Restart this node gracefully (leaderships handed off, requests drained) in the same \
             process from the same binary path: a replaced binary is an upgrade",
            post(cluster_routes::restart),
        )
        .answer(
            202,
            Some("application/json"),
            Some(json!({"type": "object", "required": ["node", "restarting"], "properties": {"node": {"type": "integer"}, "restarting": {"const": true}}})),
        ),
        route(
            "get",
            "/api/v1/backup/catalog",
            Admin,
            "The catalogue for a backup: every record but the cluster's own (placement, signing \
             key) from one snapshot taken after a catalogue barrier, as length-prefixed frames; \
             the header x-tessera-catalog-index names the log index it reflects",
            get(backup::dump_catalog),
        )
        .answer(200, Some("application/octet-stream"), None),
        route(
            "post",
            "/api/v1/backup/catalog",
            Admin,
            "Restore a chunk of catalogue records from a backup; refused (409) on a cluster whose \
             catalogue holds domain data and is not being restored from the same backup",
            post(backup::restore_catalog),
        )
        .query::<backup::RestoreCatalogQuery>("backup=20261205T101500Z&done=false")
        .raw("frames as GET /api/v1/backup/catalog sends them, at most 68 MiB")
        .responds(200, backup::restored_catalog_schema())
        .errors(&[409, 413]),
        route(
            "get",
            "/api/v1/backup/objects",
            Admin,
            "A page of one shard's object records in hash order, from this node's replica after \
             a barrier (409 if it holds none)",
            get(backup::list_objects),
        )
        .pages::<backup::BackupObject>()
        .query::<backup::ObjectsQuery>("shard=0&limit=100")
        .errors(&[409]),
        route(
            "put",
            "/api/v1/backup/objects/{sha}",
            Admin,
            "Restore an object from a backup with its recorded metadata and reference count \
             (idempotent); only into a cluster a restore has claimed and not finished (409)",
            put(backup::restore_object),
        )
        .query::<backup::RestoreObjectQuery>(
            "content_type=image/png&width=1&height=1&refcount=1&created_ms=0",
        )
        .raw("the object's bytes, which must hash to {sha}")
        .responds(200, backup::restored_object_schema())
        .errors(&[409, 413]),
        route(
            "get",
            "/api/v1/cluster/nodes",
            Admin,
            "The node set: each node's state and replicas, and the replica moves to go and under way",
            get(nodes::list),
        )
        .returns::<nodes::NodesView>(200),
        route(
            "post",
            "/api/v1/cluster/nodes",
            Admin,
            "Add a running node to the cluster; about 1/N of the replicas move to it",
            post(nodes::add),
        )
        .returns::<nodes::NodesView>(202)
        .errors(&[409])
        .json::<nodes::NewNode>(json!({"id": 4, "http": "10.0.0.4:8080", "rpc": "10.0.0.4:9080"})),
        route(
            "delete",
            "/api/v1/cluster/nodes/{id}",
            Admin,
            "Remove a node (its replicas move away first); ?decommission=true for a dead one",
            delete(nodes::remove),
        )
        .returns::<nodes::NodesView>(202)
        .errors(&[409])
        .query::<nodes::RemoveQuery>("decommission=true"),
        route(
            "post",
            "/api/v1/cluster/init",
            InitToken,
            "Initialise a new cluster (idempotent)",
            post(cluster_routes::init),
        )
        .responds(200, cluster_routes::init_schema()),
        route(
            "get",
            "/api/v1/users",
            Admin,
            "Users, paged (limit, cursor)",
            get(users::list),
        )
        .pages::<users::UserView>()
        .query::<paging::Page>("limit=100&cursor=mia"),
        route(
            "post",
            "/api/v1/users",
            Admin,
            "Create a user",
            post(users::create),
        )
        .returns::<users::UserView>(201)
        .answer(204, None, None)
        .json::<users::NewUser>(json!({"username": "mia", "password": "a-long-password", "role": "manager"})),
        route(
            "get",
            "/api/v1/users/{name}",
            AdminOrSelf,
            "A user (admins, or the user themself)",
            get(users::get),
        )
        .returns::<users::UserView>(200),
        route(
            "patch",
            "/api/v1/users/{name}",
            Admin,
            "Change password, role or disabled",
            patch(users::update),
        )
        .returns::<users::UserView>(200)
        .answer(204, None, None)
        .json::<users::Change>(json!({"password": "another-long-password", "role": "reviewer", "disabled": false})),
        route(
            "delete",
            "/api/v1/users/{name}",
            Admin,
            "Delete a user",
            delete(users::delete),
        )
        .answer(204, None, None),
        route(
            "get",
            "/api/v1/me",
            SignedIn,
            "The signed-in user",
            get(users::me),
        )
        .returns::<users::UserView>(200),
        route(
            "post",
            "/api/v1/me/tokens",
            SignedIn,
            "A long-lived API token",
            post(oauth::api_token),
        )
        .returns::<oauth::ApiTokenAnswer>(201),
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
        )
        .answer(204, None, None),
        route(
            "put",
            "/api/v1/me/password",
            SignedIn,
            "Change your own password (proving the current one); every other session of yours ends",
            put(sessions::change_password),
        )
        .json::<sessions::PasswordChange>(json!({"current_password": "a-long-password", "new_password": "another-long-password"}))
        .errors(&[429])
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
        )
        .answer(204, None, None),
        route(
            "get",
            "/api/v1/datasets",
            Manager,
            "Datasets, paged (limit, cursor)",
            get(datasets::list),
        )
        .pages::<datasets::DatasetView>()
        .query::<paging::Page>("limit=100&cursor=12"),
        route(
            "post",
            "/api/v1/datasets",
            Manager,
            "Create a dataset",
            post(datasets::create),
        )
        .returns::<datasets::DatasetView>(201)
        .json::<datasets::NameBody>(json!({"name": "street scenes"})),
        route(
            "get",
            "/api/v1/datasets/{id}",
            Manager,
            "A dataset",
            get(datasets::get),
        )
        .returns::<datasets::DatasetView>(200),
        route(
            "patch",
            "/api/v1/datasets/{id}",
            Manager,
            "Rename a dataset",
            patch(datasets::rename),
        )
        .returns::<datasets::DatasetView>(200)
        .json::<datasets::NameBody>(json!({"name": "street scenes 2"})),
        route(
            "delete",
            "/api/v1/datasets/{id}",
            Manager,
            "Delete a dataset and release its images",
            delete(datasets::delete),
        )
        .answer(204, None, None),
        route(
            "get",
            "/api/v1/datasets/{id}/images",
            Manager,
            "A dataset's images with presigned URLs, paged",
            get(datasets::images),
        )
        .pages::<datasets::ImageView>()
        .query::<datasets::ImagesQuery>("limit=100&cursor=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08&annotation_set=1&annotated=true&label=car"),
        route(
            "post",
            "/api/v1/datasets/{id}/images",
            Manager,
            "Add uploaded images by SHA-256",
            post(datasets::add_images),
        )
        .responds(200, json!({"type": "object", "required": ["added", "already_present"], "properties": {"added": shas_schema("the images added"), "already_present": {"type": "integer", "minimum": 0}}}))
        .json::<datasets::AddBody>(json!({"images": [{"sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "name": "cam1/0001.jpg"}]})),
        route(
            "post",
            "/api/v1/datasets/{id}/images/remove",
            Manager,
            "Remove images",
            post(datasets::remove),
        )
        .responds(200, json!({"type": "object", "required": ["removed"], "properties": {"removed": shas_schema("the images removed")}}))
        .json::<datasets::RemoveBody>(json!({"images": ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]})),
        route(
            "post",
            "/api/v1/datasets/{id}/annotation-sets",
            Manager,
            "Create an annotation set (label schema) on a dataset",
            post(annotation_sets::create),
        )
        .returns::<tessera_domain::annotation_sets::AnnotationSet>(201)
        .json::<annotation_sets::NewSet>(json!({"name": "v1", "reviewers": [], "labels": [{"name": "car", "color": "#ff0000", "kinds": ["rectangle", "polygon"], "attributes": [{"name": "colour", "type": "select", "options": ["red", "blue"], "required": false}]}, {"name": "person", "color": "#00ff00", "kinds": ["points"], "keypoints": ["head", "hand"], "skeleton": [[0, 1]]}]})),
        route(
            "get",
            "/api/v1/annotation-sets",
            Manager,
            "Annotation sets, paged (dataset, limit, cursor)",
            get(annotation_sets::list),
        )
        .pages::<tessera_domain::annotation_sets::AnnotationSet>()
        .query::<annotation_sets::Page>("dataset=1&limit=100&cursor=3"),
        route(
            "get",
            "/api/v1/annotation-sets/{id}",
            Manager,
            "An annotation set",
            get(annotation_sets::get),
        )
        .returns::<tessera_domain::annotation_sets::AnnotationSet>(200),
        route(
            "patch",
            "/api/v1/annotation-sets/{id}",
            Manager,
            "Rename or change the label schema",
            patch(annotation_sets::update),
        )
        .returns::<tessera_domain::annotation_sets::AnnotationSet>(200)
        .json::<annotation_sets::Change>(json!({"name": "v2", "reviewers": ["rev1"]})),
        route(
            "delete",
            "/api/v1/annotation-sets/{id}",
            Manager,
            "Delete an annotation set",
            delete(annotation_sets::delete),
        )
        .answer(204, None, None),
        route(
            "post",
            "/api/v1/annotation-sets/{id}/tasks/split",
            Manager,
            "Split into tasks (chunk_size, overlap, assignees or pool)",
            post(tasks::split),
        )
        .responds(201, json!({"type": "object", "required": ["tasks", "images", "already_tasked"], "properties": {"tasks": {"type": "array", "items": {"type": "integer", "minimum": 0}, "description": "the new tasks' ids"}, "images": {"type": "integer", "minimum": 0}, "already_tasked": {"type": "integer", "minimum": 0, "description": "images left out: a task of the set holds them"}}}))
        .json::<tasks::SplitBody>(json!({"chunk_size": 50, "overlap": 2, "assignees": ["ann1", "ann2"]})),
        route(
            "get",
            "/api/v1/annotation-sets/{id}/tasks",
            Reviewer,
            "Tasks of an annotation set, paged (state, limit, cursor)",
            get(tasks::list),
        )
        .pages::<tasks::TaskSummary>()
        .query::<tasks::Page>("state=submitted&limit=100&cursor=40"),
        route(
            "get",
            "/api/v1/me/tasks",
            SignedIn,
            "The caller's tasks",
            get(tasks::mine),
        )
        .pages::<tasks::TaskSummary>()
        .query::<tasks::Page>("state=in_progress&limit=100&cursor=40"),
        route(
            "get",
            "/api/v1/review/tasks",
            Reviewer,
            "The review queue: submitted tasks and those in review by the caller, with quality \
             figures (?state=, ?order=agreement: least agreed first)",
            get(tasks::review_queue),
        )
        .pages::<tasks::TaskSummary>()
        .query::<tasks::ReviewPage>("state=submitted&limit=100&cursor=40&order=agreement"),
        route(
            "get",
            "/api/v1/pool/tasks",
            SignedIn,
            "Unassigned tasks to claim",
            get(tasks::pool),
        )
        .pages::<tasks::TaskSummary>()
        .query::<tasks::Page>("limit=100&cursor=40"),
        route(
            "get",
            "/api/v1/tasks/{id}",
            SignedIn,
            "A task with presigned image URLs (its assignee, pool tasks, reviewers and up)",
            get(tasks::get),
        )
        .returns::<tasks::TaskDetail>(200),
        route(
            "post",
            "/api/v1/tasks/{id}/reassign",
            Manager,
            "Give a task to someone else or back to the pool",
            post(tasks::reassign),
        )
        .returns::<tasks::TaskDetail>(200)
        .json::<tasks::ReassignBody>(json!({"assignee": "ann2"})),
        route(
            "post",
            "/api/v1/tasks/{id}/{action}",
            SignedIn,
            "claim, start, submit (assignee); review, accept, reject (reviewers and up); archive (managers)",
            post(tasks::act),
        )
        .returns::<tasks::TaskDetail>(200)
        .json::<tasks::ActBody>(json!({"reason": "boxes too loose (only for reject)"}))
        .body_optional(),
        route(
            "get",
            "/api/v1/tasks/{id}/images/{sha}/annotations",
            SignedIn,
            "The current version of an image's shapes in a task (ETag)",
            get(annotations::get),
        )
        .returns::<annotations::VersionView>(200),
        route(
            "put",
            "/api/v1/tasks/{id}/images/{sha}/annotations",
            SignedIn,
            "Save shapes (If-Match: the edited version; 412 if stale)",
            put(annotations::put),
        )
        .responds(200, json!({"type": "object", "required": ["version"], "properties": {"version": {"type": "integer", "minimum": 0}}}))
        .header(
            "If-Match",
            "the version edited: the ETag of the GET, \"0\" for none",
            r#"^(W/)?"(0|[1-9][0-9]{0,18})"$"#,
        )
        .errors(&[412, 428])
        .json::<annotations::Body>(json!({"shapes": [{"label": "car", "kind": "rectangle", "points": [[10, 20], [200, 120]], "attributes": {"colour": "red"}}, {"label": "car", "kind": "rotated_rectangle", "points": [[50, 50], [90, 70]], "angle": 30, "occluded": true}]})),
        route(
            "patch",
            "/api/v1/tasks/{id}/images/{sha}/annotations",
            SignedIn,
            "Save what changed since the edited version (If-Match; 412 if stale): splices [at, remove, [shapes]] by position in it",
            patch(annotations::patch),
        )
        .responds(200, json!({"type": "object", "required": ["version"], "properties": {"version": {"type": "integer", "minimum": 0}}}))
        .header(
            "If-Match",
            "the version edited: the ETag of the GET",
            r#"^(W/)?"(0|[1-9][0-9]{0,18})"$"#,
        )
        .errors(&[412, 428])
        .json::<annotations::PatchBody>(json!({"base_len": 2, "splices": [[1, 1, [{"label": "car", "kind": "rectangle", "points": [[12, 20], [200, 120]]}]], [2, 0, [{"label": "car", "kind": "rectangle", "points": [[1, 1], [9, 9]], "occluded": true}]]]})),
        route(
            "get",
            "/api/v1/tasks/{id}/images/{sha}/annotations/history",
            SignedIn,
            "Every saved version, who and when",
            get(annotations::history),
        )
        .returns::<crate::paging::Items<annotations::VersionView>>(200),
        route(
            "get",
            "/api/v1/annotation-sets/{id}/stats",
            Reviewer,
            "Progress and label statistics, maintained incrementally",
            get(annotation_sets::stats),
        )
        .returns::<annotation_sets::StatsView>(200),
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
        .returns::<tessera_domain::annotation_sets::AnnotationSet>(200)
        .json::<tessera_domain::quality::Policy>(json!({"honeypot_fraction": 0.1, "quorum": 2, "min_similarity": 0.5, "oks_sigma": 0.1, "review_below": 0.6})),
        route(
            "get",
            "/api/v1/annotation-sets/{id}/quality",
            Reviewer,
            "Quality report: honeypot scores and consensus agreement per annotator and task, \
             least agreed images, images pending a recompute",
            get(quality::report),
        )
        .returns::<tessera_domain::quality_report::Report>(200),
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
        .answer(204, None, None)
        .json::<quality::PinBody>(json!({"chunk": 3, "task": 12})),
        route(
            "delete",
            "/api/v1/annotation-sets/{id}/quality/images/{sha}/consensus",
            Reviewer,
            "Back to the computed consensus (?chunk=)",
            delete(quality::unpin),
        )
        .answer(204, None, None)
        .query::<quality::ChunkQuery>("chunk=3"),
        route(
            "post",
            "/api/v1/webhooks",
            Manager,
            "Register a webhook (url, events, annotation_set); answers its signing secret once",
            post(webhooks::create),
        )
        .answer(201, Some("application/json"), None)
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
        )
        .answer(204, None, None),
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
        .answer(201, Some("application/json"), Some(json!({"type": "object", "required": ["images"], "properties": {"images": {"type": "array", "items": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}})))
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
        )
        .answer(204, None, None),
        route(
            "get",
            "/api/v1/tasks/{id}/comments",
            SignedIn,
            "A task's review threads (assignee, reviewers and up)",
            get(comments::list),
        )
        .returns::<crate::paging::Items<comments::CommentView>>(200),
        route(
            "post",
            "/api/v1/tasks/{id}/comments",
            SignedIn,
            "Start a thread at an image point, or answer one",
            post(comments::add),
        )
        .returns::<comments::CommentView>(201)
        .json::<comments::NewComment>(json!({"sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "x": 15, "y": 25, "text": "box too loose"})),
        route(
            "post",
            "/api/v1/comments/{id}/resolve",
            Reviewer,
            "Resolve a thread",
            post(comments::resolve),
        )
        .returns::<comments::CommentView>(200),
        route(
            "post",
            "/api/v1/datasets/{id}/imports",
            Manager,
            "Import an image, archive (zip, tar, tar.gz, tar.zst), video, PDF or office document \
             (raw body; ?filename=&video_fps=&pdf_dpi=) as a job",
            post(import::start),
        )
        .returns::<jobs::JobView>(202)
        .errors(&[411])
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
        .returns::<jobs::JobView>(202)
        .errors(&[411])
        .query::<annotation_import::Options>("format=coco&create_labels=true")
        .raw("a zip of a COCO, VOC, YOLO or CVAT dataset, or a bare COCO JSON / CVAT XML file"),
        route(
            "post",
            "/api/v1/annotation-sets/{id}/exports",
            Manager,
            "Start an export job (coco, voc, yolo, yolo-segment, yolo-pose, yolo-darknet, cvat, labelme, csv)",
            post(export::start),
        )
        .returns::<jobs::JobView>(202)
        .json::<export::Options>(json!({"format": "coco", "include_images": true, "only_accepted": true, "splits": {"train": 0.8, "val": 0.2}, "seed": 1})),
        route(
            "get",
            "/api/v1/jobs",
            Manager,
            "Import and export jobs (?dataset= or ?annotation_set=), paged",
            get(jobs::list),
        )
        .pages::<jobs::JobView>()
        .query::<jobs::ListQuery>("annotation_set=1&limit=100&cursor=7"),
        route(
            "get",
            "/api/v1/jobs/{id}",
            Manager,
            "A job's state, progress, skipped files and result",
            get(jobs::get),
        )
        .returns::<jobs::JobView>(200),
        route(
            "post",
            "/api/v1/jobs/{id}/cancel",
            Manager,
            "Cancel a running job",
            post(jobs::cancel),
        )
        .returns::<jobs::JobView>(200),
        route(
            "get",
            "/api/v1/jobs/{id}/download",
            ManagerOrPresigned,
            "A finished export's zip (Range supported; other nodes redirect to the one holding it)",
            get(jobs::download),
        )
        .answer(200, Some("application/zip"), None)
        .answer(206, Some("application/zip"), None)
        .answer(307, None, None)
        .errors(&[409, 410, 416]),
        route(
            "post",
            "/oauth/token",
            Anyone,
            "OAuth2 token endpoint (password, refresh_token grants)",
            post(oauth::token),
        )
        .returns::<oauth::TokenAnswer>(200)
        .form::<oauth::TokenRequest>(json!({"grant_type": "password", "username": "mia", "password": "a-long-password"}))
        .errors(&[429]),
        route(
            "post",
            "/oauth/revoke",
            Anyone,
            "Revoke a token (RFC 7009)",
            post(oauth::revoke),
        )
        .form::<oauth::RevokeRequest>(json!({"token": "eyJ…"}))
        .answer(200, None, None),
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
        )
        .responds(200, json!({"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}})),
        route(
            "get",
            "/readyz",
            Anyone,
            "Every group hosted here has a leader",
            get(cluster_routes::readyz),
        )
        .answer(200, Some("application/json"), Some(ready_schema()))
        .answer(503, Some("application/json"), Some(ready_schema())),
        route(
            "get",
            "/metrics",
            Anyone,
            "Prometheus metrics",
            get(metrics::render),
        )
        .answer(200, Some("text/plain"), None),
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
        if r.body
            .as_ref()
            .is_some_and(|b| b.media_type == "application/json")
        {
            handler = handler.route_layer(axum::middleware::from_fn(
                crate::body_limit::refuse_oversized,
            ));
        }
        router = router.route(r.path, handler.route_layer(check));
    }
    router
}

/// A list of SHA-256 hex digests.
fn shas_schema(description: &str) -> Value {
    json!({ "type": "array", "description": description, "items": { "type": "string", "pattern": "^[0-9a-f]{64}$" } })
}

/// `/readyz`'s `{"ready", "node"}`, with 200 and with 503.
fn ready_schema() -> Value {
    json!({
        "type": "object",
        "required": ["ready", "node"],
        "properties": {
            "ready": { "type": "boolean" },
            "node": { "type": "integer" },
            "draining": { "type": "boolean", "description": "the node is stopping (handing off its leaderships)" },
            "started_ms": { "type": "integer", "description": "when this node process started" }
        }
    })
}

/// `{"<field>": <how many sessions ended>}`.
fn ended_schema(field: &str) -> Value {
    json!({
        "type": "object",
        "required": [field],
        "properties": { field: { "type": "integer", "description": "sessions ended" } }
    })
}

/// A route's `operationId`, which generated clients name their methods after: the method and
/// the path's literal segments past `/api/v1`, with `by_<param>` for each parameter
/// (`DELETE /api/v1/users/{name}/sessions/{id}` is `delete_users_by_name_sessions_by_id`).
fn operation_id(method: &str, path: &str) -> String {
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    let mut id = method.to_string();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(param) => {
                id.push_str("by_");
                id.push_str(param);
            }
            None => id.extend(
                seg.chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
            ),
        }
    }
    id
}

/// The schema of a path parameter, by its name: a session's `{id}` is 32 hex digits, every
/// other `{id}` a `u64`; every `{sha}` a SHA-256 in lowercase hex, `{action}` a task action,
/// `{name}` a username.
fn path_parameter_schema(path: &str, name: &str) -> Value {
    match name {
        "id" if path.contains("/sessions/") => {
            json!({ "type": "string", "pattern": "^[0-9a-f]{32}$" })
        }
        "id" => json!({ "type": "integer", "minimum": 0, "maximum": u64::MAX }),
        "sha" => json!({ "type": "string", "pattern": "^[0-9a-f]{64}$" }),
        "action" => json!({ "type": "string", "enum": crate::tasks::ACTIONS }),
        _ => json!({ "type": "string", "minLength": 1 }),
    }
}

/// The error statuses a route can answer: every route 400 (a path, query or body it cannot
/// parse), 404 (no such record) and 503 (no leader, a peer down); routes behind sign-in 401 and
/// 403; writes 409 (a conflicting record), 422 (a field breaking a rule) and 507 (disk full);
/// routes with a query 422; routes with a body 413; and what the table adds per route.
fn error_statuses(r: &Route) -> BTreeSet<u16> {
    let mut statuses = BTreeSet::from([400, 404, 503]);
    if r.access != Access::Anyone {
        statuses.extend([401, 403]);
    }
    if r.method != "get" {
        statuses.extend([409, 422, 507]);
    }
    if r.query.is_some() {
        statuses.insert(422);
    }
    if let Some(body) = &r.body {
        statuses.insert(413);
        // A form without its content type (axum's `Form` insists on it).
        if body.media_type == "application/x-www-form-urlencoded" {
            statuses.insert(415);
        }
    }
    statuses.extend(r.errors);
    statuses
}

/// Bounds the integers of a generated schema by their Rust type (`uint64` and the like carry
/// only a `format`), so that a generated client and a fuzzer keep within what parses.
fn bound_integers(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let bounds = match map.get("format").and_then(Value::as_str) {
                Some("uint64" | "uint") => Some((json!(0), json!(u64::MAX))),
                Some("uint32") => Some((json!(0), json!(u32::MAX))),
                Some("uint16") => Some((json!(0), json!(u16::MAX))),
                Some("uint8") => Some((json!(0), json!(u8::MAX))),
                _ => None,
            };
            if let Some((min, max)) = bounds {
                map.entry("minimum").or_insert(min);
                map.entry("maximum").or_insert(max);
            }
            map.values_mut().for_each(bound_integers);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

/// The query parameters of a route: one per property of its query type's schema.
fn query_parameters(query: &QueryDoc) -> Vec<Value> {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .for_deserialize()
        .into_generator();
    let schema = (query.schema)(&mut generator).to_value();
    let required: Vec<&Value> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let examples: Map<String, Value> = query
        .example
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let properties = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    properties
        .into_iter()
        .map(|(name, mut schema)| {
            // A query parameter is absent or has a value: `null` has no spelling in a query.
            if let Some(types) = schema.get("type").and_then(Value::as_array).cloned() {
                let kept: Vec<Value> = types.into_iter().filter(|t| t != "null").collect();
                schema["type"] = if kept.len() == 1 {
                    kept[0].clone()
                } else {
                    json!(kept)
                };
            }
            bound_integers(&mut schema);
            let mut param = json!({
                "name": name,
                "in": "query",
                "required": required.contains(&&json!(name)),
                "schema": schema,
            });
            if let Some(example) = examples.get(&name) {
                param["example"] = example.clone();
            }
            param
        })
        .collect()
}

/// The OpenAPI 3.1 document of the table. Request and error bodies are JSON Schemas (2020-12,
/// OpenAPI 3.1's dialect) generated by schemars from the Rust types the handlers parse and
/// send, under `components/schemas`.
pub fn openapi() -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .for_deserialize()
        .into_generator();
    let error = generator
        .subschema_for::<crate::error::ErrorBody>()
        .to_value();
    let oauth_error = json!({ "anyOf": [
        error.clone(),
        generator.subschema_for::<crate::oauth::OAuthErrorBody>().to_value(),
    ]});
    let mut paths = Map::new();
    for r in routes() {
        let mut params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": path_parameter_schema(r.path, name) }))
            .collect();
        if let Some(query) = &r.query {
            params.extend(query_parameters(query));
        }
        if let Some((name, description, pattern)) = r.header {
            params.push(json!({ "name": name, "in": "header", "required": true, "description": description, "schema": { "type": "string", "pattern": pattern } }));
        }
        let security = match r.access {
            Access::Anyone => json!([]),
            Access::ManagerOrPresigned => json!([{ "bearer": [] }, {}]),
            _ => json!([{ "bearer": [] }]),
        };
        let mut responses = Map::new();
        let ok = [Answer {
            status: 200,
            media_type: Some("application/json"),
            schema: None,
        }];
        let answers = if r.answers.is_empty() {
            &ok[..]
        } else {
            &r.answers
        };
        for answer in answers {
            let mut response = json!({ "description": "success" });
            if let Some(media_type) = answer.media_type {
                let mut content = json!({});
                if let Some(schema) = &answer.schema {
                    content["schema"] = schema.generate(&mut generator);
                }
                response["content"] = json!({ media_type: content });
            }
            responses.insert(answer.status.to_string(), response);
        }
        let error_schema = if r.path.starts_with("/oauth/") {
            &oauth_error
        } else {
            &error
        };
        for status in error_statuses(&r) {
            let reason = axum::http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("error");
            responses.entry(status.to_string()).or_insert_with(|| {
                json!({
                    "description": reason,
                    "content": { "application/json": { "schema": error_schema } },
                })
            });
        }
        let mut op = json!({
            "operationId": operation_id(r.method, r.path),
            "summary": r.summary,
            "description": format!("Access: {}.", r.access.describe()),
            "x-tessera-access": r.access.key(),
            "parameters": params,
            "security": security,
            "responses": responses,
        });
        if let Some(query) = &r.query {
            op["x-rust-query-type"] = json!(query.rust_type);
        }
        if let Some(body) = &r.body {
            let mut content = match body.schema {
                Some(schema) => json!({ "schema": schema(&mut generator) }),
                // The handlers refuse an empty body (400 `empty_body`).
                None => {
                    json!({ "schema": { "type": "string", "contentMediaType": "application/octet-stream", "minLength": 1 } })
                }
            };
            if let Some(example) = &body.example {
                content["example"] = example.clone();
                content["x-rust-type"] = json!(body.rust_type);
            }
            op["requestBody"] = json!({
                "required": body.required,
                "description": body.description,
                "content": { body.media_type: content },
            });
        }
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    let mut schemas = Value::Object(generator.take_definitions(true));
    bound_integers(&mut schemas);
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Tessera", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "An access token from POST /oauth/token, or an API token from POST /api/v1/me/tokens" },
                "oauth2": {
                    "type": "oauth2",
                    "description": "How bearer tokens are obtained",
                    "flows": { "password": { "tokenUrl": "/oauth/token", "refreshUrl": "/oauth/token", "scopes": {} } }
                }
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
    fn json_bodies_are_schemas_in_components_and_every_status_is_listed() {
        let doc = openapi();
        let schemas = &doc["components"]["schemas"];
        for r in routes() {
            let op = &doc["paths"][r.path][r.method];
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                !responses.contains_key("default"),
                "{} {}",
                r.method,
                r.path
            );
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{} {}: no success",
                r.method,
                r.path
            );
            let reference = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .map(|s| s.trim_start_matches("#/components/schemas/"));
            if let Some(name) = reference {
                assert!(schemas[name].is_object(), "{} {}: {name}", r.method, r.path);
            }
        }
        let new_set = &schemas["NewSet"];
        assert_eq!(new_set["additionalProperties"], json!(false), "{new_set}");
        assert_eq!(
            new_set["properties"]["labels"]["items"]["$ref"],
            json!("#/components/schemas/Label")
        );
        assert_eq!(schemas["Error"]["required"], json!(["error"]));
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
