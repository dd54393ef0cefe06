//! The consensus of K annotators' versions of one image: the shapes enough of them agree on,
//! each merged from the versions that drew it.
//!
//! 1. The versions are put in a canonical order (by content, then annotator), and so are the
//!    shapes inside each, so neither the order annotators are listed in nor the order they drew
//!    in changes the result.
//! 2. Every pair of versions is matched optimally ([`match_shapes`]). The matched pairs, best
//!    first, join shapes into groups; a pair never joins two groups that already hold a shape of
//!    the same annotator, so a group is at most one shape per annotator.
//! 3. A group with at least `quorum` shapes becomes a consensus shape: boxes and rotated boxes
//!    are the mean of the members, keypoints the mean of each keypoint over the members that
//!    labelled it (labelled when at least half of them did; occluded when most of those say
//!    so), polygons, lines, tags and mixed kinds the member that agrees best with the others
//!    (a mean polygon of different vertex counts is not a shape anybody drew). Each attribute
//!    is kept when more than half of the members set it, with the value most of them chose; the
//!    shape is occluded when more than half of them say so.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::annotation_sets::ShapeKind;
use crate::shape::{Shape, NOT_LABELLED, OCCLUDED, VISIBLE};

use super::matching::match_shapes;
use super::similarity::similarity;
use super::Settings;

/// One annotator's version of the image.
#[derive(Clone, Copy, Debug)]
pub struct Version<'a> {
    pub annotator: &'a str,
    pub shapes: &'a [Shape],
}

/// A consensus shape and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Merged {
    pub shape: Shape,
    /// The annotators whose shapes were merged, with each shape's index in their version.
    pub from: Vec<(String, usize)>,
    /// Mean similarity of every pair of merged shapes (1 for a single shape).
    pub agreement: f64,
}

/// The majority quorum for `k` versions.
pub fn majority(k: usize) -> usize {
    k / 2 + 1
}

/// The consensus of `versions` with at least `quorum` annotators per kept shape.
pub fn merge(versions: &[Version], quorum: usize, settings: &Settings) -> Vec<Merged> {
    merge_with_agreement(versions, quorum, settings).0
}

/// [`merge`], and the mean agreement of every pair of versions
/// ([`super::agreement::of_image`]) from the same matchings, so that an image is matched once
/// per pair; `None` with fewer than two versions.
pub fn merge_with_agreement(
    versions: &[Version],
    quorum: usize,
    settings: &Settings,
) -> (Vec<Merged>, Option<f64>) {
    let canonical = canonical(versions);
    let shapes: Vec<Vec<&Shape>> = canonical
        .iter()
        .map(|(v, order)| order.iter().map(|&i| &v.shapes[i]).collect())
        .collect();
    let owned: Vec<Vec<Shape>> = shapes
        .iter()
        .map(|v| v.iter().map(|s| (*s).clone()).collect())
        .collect();
    // Nodes are (version, shape) in canonical order; `offset[v]` is version v's first node.
    let mut offset = Vec::with_capacity(owned.len());
    let mut nodes = Vec::new();
    for (v, list) in owned.iter().enumerate() {
        offset.push(nodes.len());
        nodes.extend((0..list.len()).map(|i| (v, i)));
    }
    let mut edges = Vec::new();
    let (mut agreement_sum, mut pairs) = (0.0, 0usize);
    for a in 0..owned.len() {
        for b in a + 1..owned.len() {
            let matched = match_shapes(&owned[a], &owned[b], settings);
            agreement_sum +=
                super::agreement::from_matches(&matched, owned[a].len() + owned[b].len());
            pairs += 1;
            for p in matched {
                edges.push((p.similarity, offset[a] + p.left, offset[b] + p.right));
            }
        }
    }
    let agreement = (pairs > 0).then(|| agreement_sum / pairs as f64);
    // Best first; equal similarities in canonical node order.
    edges.sort_by(|x, y| y.0.total_cmp(&x.0).then((x.1, x.2).cmp(&(y.1, y.2))));
    let mut groups = Groups::new(&nodes);
    for (_, x, y) in edges {
        groups.join(x, y);
    }
    let mut merged: Vec<Merged> = groups
        .into_members()
        .into_iter()
        .filter(|members| members.len() >= quorum.max(1))
        .map(|members| {
            let parts: Vec<&Shape> = members
                .iter()
                .map(|&n| &owned[nodes[n].0][nodes[n].1])
                .collect();
            let from = members
                .iter()
                .map(|&n| {
                    let (v, i) = nodes[n];
                    let (version, order) = &canonical[v];
                    (version.annotator.to_string(), order[i])
                })
                .collect();
            Merged {
                shape: combine(&parts, settings),
                from,
                agreement: mean_pairwise(&parts, settings),
            }
        })
        .collect();
    merged.sort_by(|a, b| a.from.cmp(&b.from));
    (merged, agreement)
}

/// The versions sorted by content then annotator, each with its shapes' indices sorted by
/// content.
fn canonical<'a>(versions: &[Version<'a>]) -> Vec<(Version<'a>, Vec<usize>)> {
    let text = |s: &Shape| serde_json::to_string(s).unwrap_or_default();
    let mut out: Vec<(Version, Vec<usize>, Vec<String>)> = versions
        .iter()
        .map(|v| {
            let mut order: Vec<usize> = (0..v.shapes.len()).collect();
            let texts: Vec<String> = v.shapes.iter().map(text).collect();
            order.sort_by(|&a, &b| texts[a].cmp(&texts[b]).then(a.cmp(&b)));
            let sorted = order.iter().map(|&i| texts[i].clone()).collect();
            (*v, order, sorted)
        })
        .collect();
    out.sort_by(|a, b| a.2.cmp(&b.2).then(a.0.annotator.cmp(b.0.annotator)));
    out.into_iter().map(|(v, order, _)| (v, order)).collect()
}

/// Groups of nodes joined by matches, never two nodes of one version in a group.
struct Groups {
    parent: Vec<usize>,
    /// For each root, the versions its group holds (sorted).
    versions: Vec<Vec<usize>>,
}

impl Groups {
    fn new(nodes: &[(usize, usize)]) -> Groups {
        Groups {
            parent: (0..nodes.len()).collect(),
            versions: nodes.iter().map(|&(v, _)| vec![v]).collect(),
        }
    }

    fn root(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    fn join(&mut self, x: usize, y: usize) {
        let (rx, ry) = (self.root(x), self.root(y));
        if rx == ry
            || self.versions[rx]
                .iter()
                .any(|v| self.versions[ry].contains(v))
        {
            return;
        }
        let (keep, gone) = (rx.min(ry), rx.max(ry));
        self.parent[gone] = keep;
        let moved = std::mem::take(&mut self.versions[gone]);
        self.versions[keep].extend(moved);
        self.versions[keep].sort_unstable();
    }

    /// Each group's nodes in ascending order, groups ordered by their first node.
    fn into_members(mut self) -> Vec<Vec<usize>> {
        let mut by_root: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for n in 0..self.parent.len() {
            let r = self.root(n);
            by_root.entry(r).or_default().push(n);
        }
        by_root.into_values().collect()
    }
}

fn mean_pairwise(parts: &[&Shape], settings: &Settings) -> f64 {
    let mut sum = 0.0;
    let mut pairs = 0usize;
    for (i, a) in parts.iter().enumerate() {
        for b in &parts[i + 1..] {
            sum += similarity(a, b, settings);
            pairs += 1;
        }
    }
    if pairs == 0 {
        1.0
    } else {
        sum / pairs as f64
    }
}

/// The merged shape of a group (see the module's rules).
fn combine(parts: &[&Shape], settings: &Settings) -> Shape {
    let first = parts[0];
    let same_kind = parts.iter().all(|s| s.kind == first.kind);
    let same_count = parts.iter().all(|s| s.points.len() == first.points.len());
    let mut shape = match first.kind {
        ShapeKind::Rectangle if same_kind && same_count => mean_box(parts),
        ShapeKind::RotatedRectangle if same_kind && same_count => mean_rotated(parts),
        ShapeKind::Points if same_kind && same_count => mean_keypoints(parts),
        _ => medoid(parts, settings).clone(),
    };
    shape.attributes = majority_attributes(parts);
    shape.occluded = 2 * parts.iter().filter(|s| s.occluded).count() > parts.len();
    shape
}

fn medoid<'a>(parts: &[&'a Shape], settings: &Settings) -> &'a Shape {
    let mut best = (f64::MIN, parts[0]);
    for a in parts {
        let total: f64 = parts.iter().map(|b| similarity(a, b, settings)).sum();
        if total > best.0 {
            best = (total, a);
        }
    }
    best.1
}

/// The normalised corners `[x0, y0, x1, y1]` of a two-point shape.
fn corners(s: &Shape) -> [f64; 4] {
    let ([a, b], [c, d]) = (s.points[0], s.points[1]);
    [a.min(c), b.min(d), a.max(c), b.max(d)]
}

fn mean_corners(parts: &[&Shape]) -> [[f64; 2]; 2] {
    let n = parts.len() as f64;
    let mut sum = [0.0; 4];
    for s in parts {
        for (t, v) in sum.iter_mut().zip(corners(s)) {
            *t += v;
        }
    }
    [[sum[0] / n, sum[1] / n], [sum[2] / n, sum[3] / n]]
}

fn mean_box(parts: &[&Shape]) -> Shape {
    let mut shape = parts[0].clone();
    shape.points = mean_corners(parts).to_vec();
    shape
}

/// Rotated boxes: mean corners of the unrotated boxes and the circular mean of the angles on a
/// half turn (a box turned by 180° is the same box).
fn mean_rotated(parts: &[&Shape]) -> Shape {
    let mut shape = mean_box(parts);
    let (sin, cos) = parts.iter().fold((0.0, 0.0), |(s, c), p| {
        let (ps, pc) = (2.0 * p.angle.unwrap_or(0.0)).to_radians().sin_cos();
        (s + ps, c + pc)
    });
    let half_turn = f64::atan2(sin, cos).to_degrees() / 2.0;
    shape.angle = Some(half_turn.rem_euclid(180.0));
    shape
}

fn mean_keypoints(parts: &[&Shape]) -> Shape {
    let mut shape = parts[0].clone();
    let mut visibility = Vec::with_capacity(shape.points.len());
    for i in 0..shape.points.len() {
        let labelled: Vec<&&Shape> = parts
            .iter()
            .filter(|s| s.visibility_of(i) != NOT_LABELLED)
            .collect();
        if labelled.is_empty() || 2 * labelled.len() < parts.len() {
            visibility.push(NOT_LABELLED);
            continue;
        }
        let n = labelled.len() as f64;
        let (x, y) = labelled.iter().fold((0.0, 0.0), |(x, y), s| {
            (x + s.points[i][0], y + s.points[i][1])
        });
        shape.points[i] = [x / n, y / n];
        let occluded = labelled
            .iter()
            .filter(|s| s.visibility_of(i) == OCCLUDED)
            .count();
        visibility.push(if 2 * occluded > labelled.len() {
            OCCLUDED
        } else {
            VISIBLE
        });
    }
    shape.visibility = if visibility.iter().all(|&v| v == VISIBLE) {
        None
    } else {
        Some(visibility)
    };
    shape
}

fn majority_attributes(parts: &[&Shape]) -> serde_json::Map<String, Value> {
    let mut votes: BTreeMap<&str, BTreeMap<String, (usize, &Value)>> = BTreeMap::new();
    for s in parts {
        for (name, value) in &s.attributes {
            let entry = votes
                .entry(name)
                .or_default()
                .entry(value.to_string())
                .or_insert((0, value));
            entry.0 += 1;
        }
    }
    votes
        .into_iter()
        .filter(|(_, values)| 2 * values.values().map(|v| v.0).sum::<usize>() > parts.len())
        .filter_map(|(name, values)| {
            // Most votes; equal votes go to the smallest value's text (BTreeMap order).
            let best =
                values
                    .values()
                    .fold(None::<(usize, &Value)>, |best, &(n, v)| match best {
                        Some((m, _)) if m >= n => best,
                        _ => Some((n, v)),
                    })?;
            Some((name.to_string(), best.1.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::boxed;
    use proptest::prelude::*;
    use serde_json::json;

    fn versions<'a>(names: &'a [&'a str], shapes: &'a [Vec<Shape>]) -> Vec<Version<'a>> {
        names
            .iter()
            .zip(shapes)
            .map(|(annotator, shapes)| Version { annotator, shapes })
            .collect()
    }

    #[test]
    fn a_majority_keeps_a_box_and_averages_it_and_a_lone_shape_is_dropped() {
        let s = Settings::default();
        let shapes = vec![
            vec![boxed("car", 0.0, 0.0), boxed("bus", 100.0, 100.0)],
            vec![boxed("car", 2.0, 0.0)],
            vec![boxed("car", 1.0, 0.0), boxed("car", 300.0, 0.0)],
        ];
        let names = ["ann", "bob", "cat"];
        let merged = merge(&versions(&names, &shapes), majority(3), &s);
        assert_eq!(merged.len(), 1, "{merged:?}");
        assert_eq!(merged[0].shape.points, vec![[1.0, 0.0], [11.0, 10.0]]);
        let mut from = merged[0].from.clone();
        from.sort();
        assert_eq!(
            from,
            vec![("ann".into(), 0), ("bob".into(), 0), ("cat".into(), 0)]
        );
        assert!(merged[0].agreement > 0.6 && merged[0].agreement < 1.0);
        // With a quorum of one, every shape anybody drew is kept.
        assert_eq!(merge(&versions(&names, &shapes), 1, &s).len(), 3);
    }

    #[test]
    fn one_annotator_never_contributes_two_shapes_to_one_consensus_shape() {
        let s = Settings::default();
        let shapes = vec![
            vec![boxed("car", 0.0, 0.0), boxed("car", 1.0, 0.0)],
            vec![boxed("car", 0.5, 0.0)],
        ];
        let merged = merge(&versions(&["a", "b"], &shapes), 1, &s);
        assert_eq!(merged.len(), 2);
        assert!(merged.iter().all(|m| {
            let mut who: Vec<&str> = m.from.iter().map(|f| f.0.as_str()).collect();
            who.dedup();
            who.len() == m.from.len()
        }));
    }

    #[test]
    fn attributes_and_keypoint_visibility_follow_the_majority() {
        let s = Settings::default();
        let mut a = boxed("car", 0.0, 0.0);
        a.attributes.insert("colour".into(), json!("red"));
        a.attributes.insert("parked".into(), json!(true));
        let mut b = a.clone();
        b.attributes.insert("colour".into(), json!("blue"));
        b.attributes.remove("parked");
        let mut c = a.clone();
        c.attributes.remove("parked");
        let merged = merge(
            &versions(&["a", "b", "c"], &[vec![a], vec![b], vec![c]]),
            2,
            &s,
        );
        assert_eq!(
            merged[0].shape.attributes.get("colour"),
            Some(&json!("red"))
        );
        assert_eq!(merged[0].shape.attributes.get("parked"), None);

        let pose = |v: Vec<u8>, dx: f64| {
            let mut p = Shape::new(
                "person",
                ShapeKind::Points,
                vec![[10.0 + dx, 10.0], [50.0, 50.0], [90.0, 10.0]],
            );
            p.visibility = Some(v);
            p
        };
        let shapes = vec![
            vec![pose(vec![2, 1, 0], 0.0)],
            vec![pose(vec![2, 1, 2], 3.0)],
            vec![pose(vec![2, 2, 0], 6.0)],
        ];
        let merged = merge(&versions(&["a", "b", "c"], &shapes), 2, &s);
        assert_eq!(merged[0].shape.points[0], [13.0, 10.0]);
        assert_eq!(merged[0].shape.visibility, Some(vec![2, 1, 0]));
    }

    #[test]
    fn polygons_take_the_best_agreeing_member_and_rotations_average_on_a_half_turn() {
        let s = Settings::default();
        let square = |x: f64| {
            Shape::new(
                "roof",
                ShapeKind::Polygon,
                vec![[x, 0.0], [x + 10.0, 0.0], [x + 10.0, 10.0], [x, 10.0]],
            )
        };
        let shapes = vec![vec![square(0.0)], vec![square(1.0)], vec![square(2.0)]];
        let merged = merge(&versions(&["a", "b", "c"], &shapes), 2, &s);
        assert_eq!(merged[0].shape, square(1.0));

        let turned = |angle: f64| {
            let mut r = Shape::new(
                "ship",
                ShapeKind::RotatedRectangle,
                vec![[0.0, 0.0], [40.0, 10.0]],
            );
            r.angle = Some(angle);
            r
        };
        let shapes = vec![vec![turned(179.0)], vec![turned(1.0)]];
        let merged = merge(&versions(&["a", "b"], &shapes), 2, &s);
        let angle = merged[0].shape.angle.unwrap_or(f64::NAN);
        assert!(
            angle.abs() < 1e-9 || (angle - 180.0).abs() < 1e-9,
            "{angle}"
        );
    }

    proptest! {
        #[test]
        fn the_order_of_annotators_and_of_their_shapes_does_not_change_the_consensus(
            raw in proptest::collection::vec(
                proptest::collection::vec((0u8..3, 0.0f64..60.0, 0.0f64..60.0), 0..6),
                2..5,
            ),
            rotate in 0usize..5,
        ) {
            let labels = ["car", "bus", "van"];
            let shapes: Vec<Vec<Shape>> = raw
                .iter()
                .map(|v| v.iter().map(|&(l, x, y)| boxed(labels[l as usize], x, y)).collect())
                .collect();
            let names: Vec<String> = (0..shapes.len()).map(|i| format!("a{i}")).collect();
            let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let s = Settings::default();
            let quorum = majority(shapes.len());
            let base = merge(&versions(&name_refs, &shapes), quorum, &s);

            let mut order: Vec<usize> = (0..shapes.len()).collect();
            order.rotate_left(rotate % shapes.len());
            let permuted: Vec<Vec<Shape>> = order
                .iter()
                .map(|&i| shapes[i].iter().rev().cloned().collect())
                .collect();
            let permuted_names: Vec<&str> = order.iter().map(|&i| name_refs[i]).collect();
            let other = merge(&versions(&permuted_names, &permuted), quorum, &s);
            let geometry = |m: &[Merged]| {
                let mut g: Vec<String> = m.iter().map(|x| serde_json::to_string(&x.shape).unwrap_or_default()).collect();
                g.sort();
                g
            };
            prop_assert_eq!(geometry(&base), geometry(&other));
            // The agreement made from the merge's own matchings is the image's agreement.
            let views: Vec<&[Shape]> = shapes.iter().map(Vec::as_slice).collect();
            let (_, agreement) = merge_with_agreement(&versions(&name_refs, &shapes), quorum, &s);
            let expected = super::super::agreement::of_image(&views, &s);
            prop_assert!(matches!((agreement, expected), (Some(x), Some(y)) if (x - y).abs() < 1e-9));
            let identical = merge(&versions(&name_refs, &vec![shapes[0].clone(); shapes.len()]), quorum, &s);
            prop_assert_eq!(identical.len(), shapes[0].len());
            prop_assert!(identical.iter().all(|m| (m.agreement - 1.0).abs() < 1e-12));
        }
    }
}
