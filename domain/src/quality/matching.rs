//! Which shape of one version is which shape of another: per label, the optimal assignment of
//! similarities at or above the threshold.
//!
//! Shapes only ever match shapes of their own label. Within a label, the candidates are split
//! into groups that could match each other (connected through [`may_overlap`]), and each group
//! is assigned on its own, so an image with thousands of shapes costs about as much as its
//! crowded neighbourhoods, not the cube of its shape count.

use std::collections::BTreeMap;

use crate::shape::Shape;

use super::assignment::best_pairs;
use super::similarity::{may_overlap, similarity};
use super::Settings;

/// A matched pair: the index of a shape in the first list, in the second, and their similarity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pair {
    pub left: usize,
    pub right: usize,
    pub similarity: f64,
}

/// The optimal matching of `left` against `right` (pairs sorted by `left`).
pub fn match_shapes(left: &[Shape], right: &[Shape], settings: &Settings) -> Vec<Pair> {
    let mut by_label: BTreeMap<&str, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for (i, s) in left.iter().enumerate() {
        by_label.entry(&s.label).or_default().0.push(i);
    }
    for (j, s) in right.iter().enumerate() {
        by_label.entry(&s.label).or_default().1.push(j);
    }
    let mut pairs = Vec::new();
    for (ls, rs) in by_label.values() {
        for (gl, gr) in neighbourhoods(left, ls, right, rs, settings) {
            let weight: Vec<Vec<f64>> = gl
                .iter()
                .map(|&i| {
                    gr.iter()
                        .map(|&j| similarity(&left[i], &right[j], settings))
                        .collect()
                })
                .collect();
            for (r, c) in best_pairs(&weight, settings.min_similarity) {
                pairs.push(Pair {
                    left: gl[r],
                    right: gr[c],
                    similarity: weight[r][c],
                });
            }
        }
    }
    pairs.sort_by_key(|p| p.left);
    pairs
}

/// The connected groups of the "may overlap" graph between `ls` (into `left`) and `rs` (into
/// `right`); groups with nobody on one side are left out (nothing to match).
fn neighbourhoods(
    left: &[Shape],
    ls: &[usize],
    right: &[Shape],
    rs: &[usize],
    settings: &Settings,
) -> Vec<(Vec<usize>, Vec<usize>)> {
    // Union-find over ls (0..n) and rs (n..n+m).
    let n = ls.len();
    let mut parent: Vec<usize> = (0..n + rs.len()).collect();
    fn root(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for (a, &i) in ls.iter().enumerate() {
        for (b, &j) in rs.iter().enumerate() {
            if may_overlap(&left[i], &right[j], settings) {
                let (x, y) = (root(&mut parent, a), root(&mut parent, n + b));
                parent[x] = y;
            }
        }
    }
    let mut groups: BTreeMap<usize, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for (a, &i) in ls.iter().enumerate() {
        let r = root(&mut parent, a);
        groups.entry(r).or_default().0.push(i);
    }
    for (b, &j) in rs.iter().enumerate() {
        let r = root(&mut parent, n + b);
        groups.entry(r).or_default().1.push(j);
    }
    groups
        .into_values()
        .filter(|(l, r)| !l.is_empty() && !r.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::boxed;

    #[test]
    fn shapes_match_only_within_their_label() {
        let s = Settings::default();
        let left = vec![boxed("car", 0.0, 0.0), boxed("bus", 100.0, 0.0)];
        let right = vec![
            boxed("bus", 0.0, 0.0),
            boxed("car", 1.0, 0.0),
            boxed("bus", 101.0, 0.0),
        ];
        let pairs = match_shapes(&left, &right, &s);
        let got: Vec<(usize, usize)> = pairs.iter().map(|p| (p.left, p.right)).collect();
        assert_eq!(got, vec![(0, 1), (1, 2)]);
        assert!((pairs[0].similarity - 9.0 / 11.0).abs() < 1e-12);
    }

    #[test]
    fn a_crowded_row_matches_optimally_and_far_shapes_stay_apart() {
        let s = Settings::default();
        // Greedy would pair left 1 (x=4) with right 0 (x=3) and strand left 0.
        let left = vec![
            boxed("car", 0.0, 0.0),
            boxed("car", 4.0, 0.0),
            boxed("car", 500.0, 0.0),
        ];
        let right = vec![boxed("car", 3.0, 0.0), boxed("car", 7.0, 0.0)];
        let pairs = match_shapes(&left, &right, &s);
        let got: Vec<(usize, usize)> = pairs.iter().map(|p| (p.left, p.right)).collect();
        assert_eq!(got, vec![(0, 0), (1, 1)]);
    }
}
