//! Client idempotency keys: a request sent again with the same `Idempotency-Key` header (and the
//! same token, method and path) makes the same Raft proposals under the same request ids, so the
//! state machine returns the first outcomes instead of applying anything twice — also for
//! requests that make several proposals (adding images takes references, then records them).
//! Without the header every proposal gets a fresh random id.

use std::cell::Cell;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use tessera_domain::catalog::{CatalogOp, CatalogOutcome};
use tessera_raft::random;
use tessera_raft::ClusterError;

use crate::AppState;

struct Scope {
    key: Option<[u8; 32]>,
    /// Proposals made so far by this request: the n-th proposal of a retry gets the n-th id.
    proposals: Cell<u32>,
}

tokio::task_local! {
    static SCOPE: Scope;
}

/// Middleware: derives the request's key from `Idempotency-Key`, the token, method and path.
pub async fn layer(request: Request, next: Next) -> Response {
    let key = request.headers().get("idempotency-key").map(|k| {
        let mut h = Sha256::new();
        h.update(k.as_bytes());
        h.update([0]);
        if let Some(auth) = request.headers().get(axum::http::header::AUTHORIZATION) {
            h.update(auth.as_bytes());
        }
        h.update([0]);
        h.update(request.method().as_str());
        h.update(request.uri().path());
        h.finalize().into()
    });
    SCOPE
        .scope(
            Scope {
                key,
                proposals: Cell::new(0),
            },
            next.run(request),
        )
        .await
}

/// The id of the next proposal of this request.
pub fn next_request_id() -> Result<[u8; 16], ClusterError> {
    let derived = SCOPE
        .try_with(|scope| {
            let n = scope.proposals.get();
            scope.proposals.set(n + 1);
            scope.key.map(|key| {
                let digest = Sha256::new()
                    .chain_update(key)
                    .chain_update(n.to_be_bytes())
                    .finalize();
                let mut id = [0u8; 16];
                id.copy_from_slice(&digest[..16]);
                id
            })
        })
        .ok()
        .flatten();
    match derived {
        Some(id) => Ok(id),
        None => random().map_err(|e| ClusterError::Internal(e.to_string())),
    }
}

/// Proposes a catalogue change under this request's next id.
pub async fn catalog(state: &AppState, op: CatalogOp) -> Result<CatalogOutcome, ClusterError> {
    state.cluster.catalog_with_id(next_request_id()?, op).await
}
