//! Every HTTP route in one table: the router and the OpenAPI document are both built from it,
//! so the document cannot drift from what the server answers.

use axum::routing::{delete, get, patch, post, put, MethodRouter};
use serde_json::{json, Map, Value};

use crate::{
    annotation_import, annotation_sets, annotations, cluster_routes, comments, datasets, export,
    import, jobs, metrics, oauth, objects, tasks, users, AppState,
};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Anyone,
    /// Any signed-in user.
    SignedIn,
    Reviewer,
    Manager,
    Admin,
    /// Admins, and any user for their own record.
    AdminOrSelf,
    /// A manager's or admin's token, or a presigned URL.
    ManagerOrPresigned,
}

impl Access {
    /// A machine-readable name, published as `x-tessera-access` in the OpenAPI document.
    fn key(self) -> &'static str {
        match self {
            Access::Anyone => "anyone",
            Access::SignedIn => "signed_in",
            Access::Reviewer => "reviewer",
            Access::Manager => "manager",
            Access::Admin | Access::AdminOrSelf => "admin",
            Access::ManagerOrPresigned => "manager",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Access::Anyone => "no token needed",
            Access::SignedIn => "any signed-in user",
            Access::Reviewer => "reviewer, manager or admin",
            Access::Manager => "manager or admin",
            Access::Admin => "admin",
            Access::AdminOrSelf => "admin, or the user themself",
            Access::ManagerOrPresigned => "manager or admin, or a presigned URL (?exp=&sig=)",
        }
    }
}

pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
    handler: MethodRouter<AppState>,
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
            "An object's bytes (ETag, If-None-Match, Range; HEAD too)",
            get(objects::serve),
        ),
        route(
            "post",
            "/api/v1/objects",
            Manager,
            "Upload an image (raw body); 201, or 200 if already stored",
            post(objects::upload),
        ),
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
            Anyone,
            "Initialise a new cluster (idempotent)",
            post(cluster_routes::init),
        ),
        route(
            "get",
            "/api/v1/users",
            Admin,
            "Users, paged (limit, cursor)",
            get(users::list),
        ),
        route(
            "post",
            "/api/v1/users",
            Admin,
            "Create a user",
            post(users::create),
        ),
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
        ),
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
            "/api/v1/datasets",
            Manager,
            "Datasets, paged (limit, cursor)",
            get(datasets::list),
        ),
        route(
            "post",
            "/api/v1/datasets",
            Manager,
            "Create a dataset",
            post(datasets::create),
        ),
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
        ),
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
        ),
        route(
            "post",
            "/api/v1/datasets/{id}/images",
            Manager,
            "Add uploaded images by SHA-256",
            post(datasets::add_images),
        ),
        route(
            "post",
            "/api/v1/datasets/{id}/images/remove",
            Manager,
            "Remove images",
            post(datasets::remove),
        ),
        route(
            "post",
            "/api/v1/datasets/{id}/annotation-sets",
            Manager,
            "Create an annotation set (label schema) on a dataset",
            post(annotation_sets::create),
        ),
        route(
            "get",
            "/api/v1/annotation-sets",
            Manager,
            "Annotation sets, paged (dataset, limit, cursor)",
            get(annotation_sets::list),
        ),
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
        ),
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
        ),
        route(
            "get",
            "/api/v1/annotation-sets/{id}/tasks",
            Reviewer,
            "Tasks of an annotation set, paged (state, limit, cursor)",
            get(tasks::list),
        ),
        route(
            "get",
            "/api/v1/me/tasks",
            SignedIn,
            "The caller's tasks",
            get(tasks::mine),
        ),
        route(
            "get",
            "/api/v1/review/tasks",
            Reviewer,
            "The review queue: submitted tasks and those in review by the caller (?state=)",
            get(tasks::review_queue),
        ),
        route(
            "get",
            "/api/v1/pool/tasks",
            SignedIn,
            "Unassigned tasks to claim",
            get(tasks::pool),
        ),
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
        ),
        route(
            "post",
            "/api/v1/tasks/{id}/{action}",
            SignedIn,
            "claim, start, submit (assignee); review, accept, reject (reviewers and up)",
            post(tasks::act),
        ),
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
        ),
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
        ),
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
        ),
        route(
            "post",
            "/api/v1/annotation-sets/{id}/annotation-imports",
            Manager,
            "Import COCO, VOC, YOLO or CVAT annotations as pre-annotations \
             (raw zip/JSON/XML body; ?format=&create_labels=) as a job",
            post(annotation_import::start),
        ),
        route(
            "post",
            "/api/v1/annotation-sets/{id}/exports",
            Manager,
            "Start an export job (coco, voc, yolo, yolo-segment, yolo-pose, yolo-darknet, cvat, labelme, csv)",
            post(export::start),
        ),
        route(
            "get",
            "/api/v1/jobs",
            Manager,
            "Import and export jobs (?dataset= or ?annotation_set=), paged",
            get(jobs::list),
        ),
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
pub fn mount(mut router: axum::Router<AppState>) -> axum::Router<AppState> {
    for r in routes() {
        router = router.route(r.path, r.handler);
    }
    router
}

/// The OpenAPI 3 document of the table.
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for r in routes() {
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
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
