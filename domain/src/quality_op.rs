//! The catalogue's quality changes: ground truth set and cleared by managers, and per-image
//! quality records proposed by the quality worker.

use serde::{Deserialize, Serialize};

use crate::ground_truth::{self, Source};
use crate::image_quality::{self, ImageQuality};
use crate::{DomainError, Sha256, Tx};

/// A change to quality state. The Raft log stores these with bincode: new variants go last.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum QualityOp {
    SetGroundTruth {
        set: u64,
        source: Source,
        by: String,
        at_ms: u64,
    },
    ClearGroundTruth {
        set: u64,
        sha: Sha256,
    },
    /// Image quality records, each as JSON text (shapes carry JSON attribute values, which
    /// bincode cannot read back), proposed at `at_ms`.
    Record {
        records: Vec<String>,
        at_ms: u64,
    },
    /// A reviewer's choice of consensus for an image in a chunk; `None` goes back to the
    /// computed consensus.
    PinConsensus {
        set: u64,
        chunk: u64,
        sha: Sha256,
        pin: Option<image_quality::Pin>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QualityOutcome {
    GroundTruth(ground_truth::Outcome),
    /// Records kept, and records dropped because their image changed since they were computed.
    Recorded {
        kept: u64,
        stale: u64,
    },
    Pinned,
    /// A pin that names a chunk without the image, or shapes that do not fit.
    Invalid(String),
}

pub fn stage(tx: &mut Tx, op: &QualityOp) -> Result<QualityOutcome, DomainError> {
    Ok(match op {
        QualityOp::SetGroundTruth {
            set,
            source,
            by,
            at_ms,
        } => QualityOutcome::GroundTruth(ground_truth::stage_set(tx, *set, source, by, *at_ms)?),
        QualityOp::ClearGroundTruth { set, sha } => {
            QualityOutcome::GroundTruth(ground_truth::stage_clear(tx, *set, sha)?)
        }
        QualityOp::Record { records, at_ms } => {
            let (mut kept, mut stale) = (0, 0);
            for text in records {
                // The proposer serialised these; one it could not have made is its bug, and
                // skipping it leaves the image marked, to be computed again.
                let Ok(record) = serde_json::from_str::<ImageQuality>(text) else {
                    stale += 1;
                    continue;
                };
                if image_quality::stage_record(tx, &record, *at_ms)? {
                    kept += 1;
                } else {
                    stale += 1;
                }
            }
            QualityOutcome::Recorded { kept, stale }
        }
        QualityOp::PinConsensus {
            set,
            chunk,
            sha,
            pin,
        } => match image_quality::stage_pin(tx, *set, *chunk, sha, pin.as_ref())? {
            Ok(()) => QualityOutcome::Pinned,
            Err(problem) => QualityOutcome::Invalid(problem),
        },
    })
}
