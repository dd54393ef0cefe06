//! The web UI: static ES modules, CSS and HTML embedded in the binary (see `build.rs`), served
//! by every node at `/`. Client-side routes (`/datasets/3`, `/tasks/7`) get `index.html`, so a
//! reload lands on the same page.
//!
//! `TESSERA_UI_DIR` makes a node serve the files from that directory instead, for working on
//! the UI without rebuilding the binary.

use std::path::{Component, Path};

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// `(path under ui/, contents)`, generated at build time.
const ASSETS: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// Paths that belong to the API: unknown ones there are JSON 404s, never the UI.
const API_PREFIXES: [&str; 5] = ["/api/", "/oauth/", "/objects/", "/metrics", "/healthz"];

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn wants_html(request: &Request) -> bool {
    request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// Reads `rel` from `TESSERA_UI_DIR` when it is set, else from the embedded table.
fn lookup(rel: &str) -> Option<Vec<u8>> {
    if let Some(dir) = std::env::var_os("TESSERA_UI_DIR") {
        let rel = Path::new(rel);
        // Only plain relative names: no `..`, no absolute paths.
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return None;
        }
        return std::fs::read(Path::new(&dir).join(rel)).ok();
    }
    ASSETS
        .iter()
        .find(|(name, _)| *name == rel)
        .map(|(_, bytes)| bytes.to_vec())
}

fn asset(rel: &str) -> Option<Response> {
    let bytes = lookup(rel)?;
    // index.html names the current module versions, so it must be revalidated; the rest is
    // small and cheap to revalidate too (ETags would buy little on loopback-class links).
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(rel)),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Some(response)
}

/// The router's fallback: UI files, `index.html` for client-side routes, JSON 404s otherwise.
pub async fn serve(request: Request) -> Response {
    let path = request.uri().path();
    let is_read = request.method() == Method::GET || request.method() == Method::HEAD;
    if !is_read || API_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return crate::error::not_found().await.into_response();
    }
    let rel = path.trim_start_matches('/');
    let found = if rel.is_empty() {
        asset("index.html")
    } else {
        asset(rel).or_else(|| {
            let is_route = !rel.contains('.') && wants_html(&request);
            is_route.then(|| asset("index.html")).flatten()
        })
    };
    found.unwrap_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_route",
            format!("no such route or UI file: {path}"),
        )
        .into_response()
    })
}
