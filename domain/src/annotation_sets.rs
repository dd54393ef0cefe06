//! Annotation sets: a label schema on a dataset, kept in the catalogue.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::records::next_id;
use crate::{key, DomainError, Records, Tx};

/// The geometric kinds a label may be drawn as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShapeKind {
    Rectangle,
    RotatedRectangle,
    Polygon,
    Polyline,
    /// Keypoints, optionally named and joined by skeleton edges.
    Points,
    /// An image-level label.
    Tag,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AttributeKind {
    Select { options: Vec<String> },
    Checkbox,
    Number { min: Option<f64>, max: Option<f64> },
    Text,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Attribute {
    #[schemars(length(min = 1))]
    pub name: String,
    #[serde(flatten)]
    pub kind: AttributeKind,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub default: Option<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Label {
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    /// `#rrggbb`.
    #[schemars(regex(pattern = r"^#[0-9A-Fa-f]{6}$"))]
    pub color: String,
    #[schemars(length(min = 1))]
    pub kinds: Vec<ShapeKind>,
    #[serde(default)]
    pub attributes: Vec<Attribute>,
    /// Names of the keypoints of a `points` label, in order.
    #[serde(default)]
    pub keypoints: Vec<String>,
    /// Pairs of keypoint indices drawn as lines.
    #[serde(default)]
    pub skeleton: Vec<(usize, usize)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AnnotationSet {
    pub id: u64,
    pub dataset_id: u64,
    pub name: String,
    pub labels: Vec<Label>,
    pub created_by: String,
    pub created_ms: u64,
    /// Users with the reviewer role who review this set's tasks (managers review every set).
    #[serde(default)]
    pub reviewers: Vec<String>,
    /// Honeypots, consensus and scoring rules (`docs/quality.md`).
    #[serde(default)]
    pub quality: crate::quality::Policy,
}

impl AnnotationSet {
    /// Whether `user` may review this set's tasks: managers and admins always, reviewers when
    /// the set lists them.
    pub fn reviewed_by(&self, user: &str, role: crate::catalog::Role) -> bool {
        use crate::catalog::Role;
        role >= Role::Manager
            || (role >= Role::Reviewer && self.reviewers.iter().any(|r| r == user))
    }
}

/// [`AnnotationSet::reviewed_by`] for set `id` (false when it does not exist).
pub fn reviews(
    r: &dyn Records,
    id: u64,
    user: &str,
    role: crate::catalog::Role,
) -> Result<bool, DomainError> {
    Ok(annotation_set(r, id)?.is_some_and(|s| s.reviewed_by(user, role)))
}

fn attribute_problem(label: &str, a: &Attribute) -> Option<String> {
    let at = format!("labels[{label}].attributes[{}]", a.name);
    if a.name.trim().is_empty() {
        return Some(format!("labels[{label}]: an attribute has no name"));
    }
    let default_ok = match (&a.kind, &a.default) {
        (_, None) => true,
        (AttributeKind::Select { options }, Some(v)) => {
            v.as_str().is_some_and(|s| options.iter().any(|o| o == s))
        }
        (AttributeKind::Checkbox, Some(v)) => v.is_boolean(),
        (AttributeKind::Number { min, max }, Some(v)) => v
            .as_f64()
            .is_some_and(|n| min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m)),
        (AttributeKind::Text, Some(v)) => v.is_string(),
    };
    match &a.kind {
        AttributeKind::Select { options } if options.is_empty() => {
            Some(format!("{at}: a select needs options"))
        }
        AttributeKind::Number {
            min: Some(lo),
            max: Some(hi),
        } if lo > hi => Some(format!("{at}: min is above max")),
        _ if !default_ok => Some(format!("{at}: the default does not fit the attribute")),
        _ => None,
    }
}

/// The first problem of a label schema, named by its path (`labels[car].color: ...`).
pub fn schema_problem(labels: &[Label]) -> Option<String> {
    if labels.is_empty() {
        return Some("labels: at least one label".into());
    }
    for (i, l) in labels.iter().enumerate() {
        if l.name.trim().is_empty() || l.name.chars().count() > 100 {
            return Some(format!("labels[{i}].name: 1-100 characters"));
        }
        if labels[..i].iter().any(|o| o.name == l.name) {
            return Some(format!("labels[{}]: the name is used twice", l.name));
        }
        let hex = l
            .color
            .strip_prefix('#')
            .filter(|h| h.len() == 6 && h.chars().all(|c| c.is_ascii_hexdigit()));
        if hex.is_none() {
            return Some(format!("labels[{}].color: #rrggbb", l.name));
        }
        if l.kinds.is_empty() {
            return Some(format!("labels[{}].kinds: at least one shape kind", l.name));
        }
        if (!l.keypoints.is_empty() || !l.skeleton.is_empty())
            && !l.kinds.contains(&ShapeKind::Points)
        {
            return Some(format!(
                "labels[{}].keypoints: only for labels drawn as points",
                l.name
            ));
        }
        if let Some((a, b)) = l
            .skeleton
            .iter()
            .find(|(a, b)| *a >= l.keypoints.len() || *b >= l.keypoints.len() || a == b)
        {
            return Some(format!(
                "labels[{}].skeleton: edge ({a}, {b}) does not join two keypoints",
                l.name
            ));
        }
        for (j, a) in l.attributes.iter().enumerate() {
            if l.attributes[..j].iter().any(|o| o.name == a.name) {
                return Some(format!(
                    "labels[{}].attributes[{}]: the name is used twice",
                    l.name, a.name
                ));
            }
            if let Some(p) = attribute_problem(&l.name, a) {
                return Some(p);
            }
        }
    }
    None
}

/// The first control character (NUL, CR, LF, ...) in `text`, as `U+000A`.
pub fn control_character(text: &str) -> Option<String> {
    text.chars()
        .find(|c| c.is_control())
        .map(|c| format!("U+{:04X}", c as u32))
}

/// The first name in a schema holding a control character: every export format writes names
/// into line- or field-based files (`obj.names`, VOC's `labelmap.txt`, CSV), where a line break
/// or NUL forges entries. The API checks this on every change; the state machine does not, so
/// log entries from before the rule apply as they did.
pub fn control_character_problem(labels: &[Label]) -> Option<String> {
    for (i, l) in labels.iter().enumerate() {
        let found = |text: &str, at: String| {
            control_character(text).map(|c| format!("{at}: control character {c} is not allowed"))
        };
        if let Some(p) = found(&l.name, format!("labels[{i}].name")) {
            return Some(p);
        }
        for (j, k) in l.keypoints.iter().enumerate() {
            if let Some(p) = found(k, format!("labels[{}].keypoints[{j}]", l.name)) {
                return Some(p);
            }
        }
        for (j, a) in l.attributes.iter().enumerate() {
            if let Some(p) = found(&a.name, format!("labels[{}].attributes[{j}].name", l.name)) {
                return Some(p);
            }
            if let AttributeKind::Select { options } = &a.kind {
                for (k, o) in options.iter().enumerate() {
                    let at = format!("labels[{}].attributes[{}].options[{k}]", l.name, a.name);
                    if let Some(p) = found(o, at) {
                        return Some(p);
                    }
                }
            }
        }
    }
    None
}

pub(crate) fn set_key(id: u64) -> Vec<u8> {
    key(&format!("annotation-set/{id:016x}"))
}

pub fn annotation_set(r: &dyn Records, id: u64) -> Result<Option<AnnotationSet>, DomainError> {
    match r.get(&set_key(id))? {
        Some(raw) => Ok(Some(
            serde_json::from_slice(&raw).map_err(|e| DomainError::Corrupt(e.to_string()))?,
        )),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(name: &str) -> Label {
        Label {
            name: name.into(),
            color: "#ff0000".into(),
            kinds: vec![ShapeKind::Rectangle],
            attributes: vec![],
            keypoints: vec![],
            skeleton: vec![],
        }
    }

    #[test]
    fn a_cursor_past_every_id_is_an_empty_page() {
        let store = crate::records::MemRecords::default();
        let page = annotation_sets(&store, None, Some(u64::MAX), 10).expect("page");
        assert!(page.is_empty());
    }

    #[test]
    fn schemas_are_checked_with_named_problems() {
        assert_eq!(schema_problem(&[label("car")]), None);
        assert!(schema_problem(&[]).is_some());
        assert!(schema_problem(&[label("car"), label("car")])
            .unwrap()
            .contains("used twice"));
        let mut bad_color = label("car");
        bad_color.color = "red".into();
        assert!(schema_problem(&[bad_color])
            .unwrap()
            .contains("labels[car].color"));
        let mut person = label("person");
        person.kinds = vec![ShapeKind::Points];
        person.keypoints = vec!["head".into(), "hand".into()];
        person.skeleton = vec![(0, 1)];
        assert_eq!(schema_problem(&[person.clone()]), None);
        person.skeleton = vec![(0, 2)];
        assert!(schema_problem(&[person]).unwrap().contains("skeleton"));
        let mut attr = label("car");
        attr.attributes = vec![Attribute {
            name: "color".into(),
            kind: AttributeKind::Select {
                options: vec!["red".into()],
            },
            required: true,
            default: Some(serde_json::json!("blue")),
        }];
        assert!(schema_problem(&[attr]).unwrap().contains("default"));
    }

    #[test]
    fn control_characters_in_names_are_named() {
        assert_eq!(control_character_problem(&[label("car")]), None);
        let forged = label("car\ntruck");
        assert_eq!(
            control_character_problem(&[forged]).as_deref(),
            Some("labels[0].name: control character U+000A is not allowed")
        );
        let mut person = label("person");
        person.kinds = vec![ShapeKind::Points];
        person.keypoints = vec!["head".into(), "ha\0nd".into()];
        assert!(control_character_problem(&[person])
            .unwrap()
            .starts_with("labels[person].keypoints[1]: control character U+0000"));
        let mut attr = label("car");
        attr.attributes = vec![Attribute {
            name: "colour".into(),
            kind: AttributeKind::Select {
                options: vec!["red\r".into()],
            },
            required: false,
            default: None,
        }];
        assert!(control_character_problem(&[attr])
            .unwrap()
            .contains("options[0]: control character U+000D"));
    }
}

/// Changes to annotation sets. Schemas travel as JSON text: the Raft log is bincode, which
/// cannot carry free-form JSON values (attribute defaults).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AnnotationSetOp {
    Create {
        dataset_id: u64,
        name: String,
        labels_json: String,
        created_by: String,
        created_ms: u64,
    },
    Update {
        id: u64,
        name: Option<String>,
        labels_json: Option<String>,
    },
    Delete {
        id: u64,
    },
    /// Replaces the set's reviewers (new variants go last: the log numbers them by position).
    SetReviewers {
        id: u64,
        reviewers: Vec<String>,
    },
    /// Replaces the set's quality policy.
    SetQuality {
        id: u64,
        policy: crate::quality::Policy,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnnotationSetOutcome {
    /// The set after the op, as JSON text.
    Set(String),
    Deleted,
    NoSuchDataset(u64),
    NoSuchSet(u64),
    Invalid(String),
    /// The new schema drops a label or shape kind that existing annotations use.
    WouldOrphan(String),
}

const NEXT_ID: &str = "annotation-set-next-id";

/// The first label or (label, kind) that current annotations use but `labels` no longer allows.
fn orphaned(stats: &crate::stats::SetStats, labels: &[Label]) -> Option<String> {
    for (label, kinds) in &stats.shapes {
        for (kind, count) in kinds.iter().filter(|(_, n)| **n > 0) {
            let allowed = labels.iter().find(|l| &l.name == label).is_some_and(|l| {
                l.kinds.iter().any(|k| {
                    serde_json::to_value(k)
                        .ok()
                        .and_then(|v| v.as_str().map(|s| s == kind))
                        == Some(true)
                })
            });
            if !allowed {
                return Some(format!("{count} {kind} shapes of label {label:?} exist; the new schema would orphan them"));
            }
        }
    }
    None
}

fn labels(json: &str) -> Result<Vec<Label>, String> {
    let labels: Vec<Label> = serde_json::from_str(json).map_err(|e| format!("labels: {e}"))?;
    match schema_problem(&labels) {
        Some(p) => Err(p),
        None => Ok(labels),
    }
}

/// Stages an annotation set op. Schemas are validated again here, so that every replica
/// applies the same checks whatever node proposed the change.
pub fn stage(tx: &mut Tx, op: &AnnotationSetOp) -> Result<AnnotationSetOutcome, DomainError> {
    let write = |tx: &mut Tx, set: &AnnotationSet| -> Result<AnnotationSetOutcome, DomainError> {
        let text = serde_json::to_string(set).map_err(|e| DomainError::Corrupt(e.to_string()))?;
        tx.put(set_key(set.id), text.as_bytes().to_vec());
        Ok(AnnotationSetOutcome::Set(text))
    };
    match op {
        AnnotationSetOp::Create {
            dataset_id,
            name,
            labels_json,
            created_by,
            created_ms,
        } => {
            if crate::datasets::dataset(tx, *dataset_id)?.is_none() {
                return Ok(AnnotationSetOutcome::NoSuchDataset(*dataset_id));
            }
            let labels = match labels(labels_json) {
                Ok(l) => l,
                Err(p) => return Ok(AnnotationSetOutcome::Invalid(p)),
            };
            let id = next_id(tx, NEXT_ID)?;
            let set = AnnotationSet {
                id,
                dataset_id: *dataset_id,
                name: name.clone(),
                labels,
                created_by: created_by.clone(),
                created_ms: *created_ms,
                reviewers: Vec::new(),
                quality: Default::default(),
            };
            write(tx, &set)
        }
        AnnotationSetOp::Update {
            id,
            name,
            labels_json,
        } => {
            let Some(mut set) = annotation_set(tx, *id)? else {
                return Ok(AnnotationSetOutcome::NoSuchSet(*id));
            };
            if let Some(json) = labels_json {
                let new = match labels(json) {
                    Ok(l) => l,
                    Err(p) => return Ok(AnnotationSetOutcome::Invalid(p)),
                };
                if let Some(orphan) = orphaned(&crate::stats::load(tx, *id)?, &new) {
                    return Ok(AnnotationSetOutcome::WouldOrphan(orphan));
                }
                set.labels = new;
            }
            if let Some(name) = name {
                set.name = name.clone();
            }
            write(tx, &set)
        }
        AnnotationSetOp::Delete { id } => {
            if annotation_set(tx, *id)?.is_none() {
                return Ok(AnnotationSetOutcome::NoSuchSet(*id));
            }
            tx.delete(set_key(*id));
            Ok(AnnotationSetOutcome::Deleted)
        }
        AnnotationSetOp::SetReviewers { id, reviewers } => {
            let Some(mut set) = annotation_set(tx, *id)? else {
                return Ok(AnnotationSetOutcome::NoSuchSet(*id));
            };
            set.reviewers = reviewers.clone();
            write(tx, &set)
        }
        AnnotationSetOp::SetQuality { id, policy } => {
            let Some(mut set) = annotation_set(tx, *id)? else {
                return Ok(AnnotationSetOutcome::NoSuchSet(*id));
            };
            if let Some(p) = policy.problem() {
                return Ok(AnnotationSetOutcome::Invalid(p));
            }
            let overlap = crate::tasks::overlap(tx, *id)?;
            if let Some(q) = policy.quorum.filter(|&q| overlap > 0 && q > overlap) {
                return Ok(AnnotationSetOutcome::Invalid(format!(
                    "quorum: {q} annotators cannot agree on an image that only {overlap} annotate \
                     (the overlap of this set's tasks); at most {overlap}"
                )));
            }
            set.quality = policy.clone();
            write(tx, &set)
        }
    }
}

/// Annotation sets of `dataset` (all datasets with `None`), in id order after `after`.
pub fn annotation_sets(
    r: &dyn Records,
    dataset: Option<u64>,
    after: Option<u64>,
    limit: usize,
) -> Result<Vec<AnnotationSet>, DomainError> {
    let prefix = key("annotation-set/");
    // No id comes after u64::MAX (a client's cursor, not necessarily one we handed out).
    let start = match after.map(|a| a.checked_add(1)) {
        Some(None) => return Ok(Vec::new()),
        next => next.flatten().map(set_key),
    };
    let iter = r.scan(&prefix, start.as_deref());
    let mut out = Vec::new();
    for item in iter {
        let (_, v) = item?;
        let set: AnnotationSet =
            serde_json::from_slice(&v).map_err(|e| DomainError::Corrupt(e.to_string()))?;
        if dataset.is_none_or(|d| d == set.dataset_id) {
            out.push(set);
            if out.len() == limit {
                break;
            }
        }
    }
    Ok(out)
}
