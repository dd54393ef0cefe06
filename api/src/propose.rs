//! The one way a request changes the catalogue.

use tessera_domain::outcome::{Op, Outcome, Refusals};

use crate::error::{unexpected, ApiError};
use crate::AppState;

/// Proposes `op` under the request's next idempotency id (`idempotency.rs`: a retry with the
/// same `Idempotency-Key` gets the first outcome back, never a second application) and
/// answers the outcome type of the op's family. A refusal comes back as the client error it
/// is (`error.rs` maps every [`tessera_domain::outcome::Refusal`] to HTTP); a cluster failure
/// as a 503 that says whether the write may have been applied.
pub async fn propose<P: Op>(state: &AppState, op: P) -> Result<P::Outcome, ApiError> {
    let outcome = crate::idempotency::catalog(state, op.into()).await?;
    let outcome = P::Outcome::from_catalog(outcome).map_err(unexpected)?;
    match outcome.refusal() {
        Some(refusal) => Err(refusal.into()),
        None => Ok(outcome),
    }
}
