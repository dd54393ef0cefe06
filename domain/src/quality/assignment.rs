//! Optimal one-to-one assignment (the Hungarian method with potentials, O(n²·m)).
//!
//! Matching shapes greedily — best pair first — can pair a shape with a neighbour's partner and
//! leave two good pairs unmatched; scores then depend on the order shapes were drawn. The optimal
//! assignment maximises the total similarity instead and is what consensus and scoring use.

/// For every row of `weight` (rows × cols, all rows the same length), the column it is assigned
/// to, maximising the sum of the chosen weights; every weight must be finite. Pairs whose weight
/// is below `min` are never reported (they count as unmatched).
pub fn best_pairs(weight: &[Vec<f64>], min: f64) -> Vec<(usize, usize)> {
    let rows = weight.len();
    let cols = weight.first().map_or(0, Vec::len);
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    // Pairs under `min` cost the same as no pair, so the optimum never prefers them over
    // leaving both sides unmatched; the transposition keeps rows ≤ columns.
    let cost = |r: usize, c: usize| {
        let w = weight[r][c];
        if w >= min {
            1.0 - w
        } else {
            1.0
        }
    };
    let pairs = if rows <= cols {
        hungarian(rows, cols, cost)
    } else {
        hungarian(cols, rows, |r, c| cost(c, r))
            .into_iter()
            .map(|(c, r)| (r, c))
            .collect()
    };
    let mut kept: Vec<(usize, usize)> = pairs
        .into_iter()
        .filter(|&(r, c)| weight[r][c] >= min)
        .collect();
    kept.sort_unstable();
    kept
}

/// Minimum-cost assignment of every row to a distinct column (`n ≤ m`).
fn hungarian(n: usize, m: usize, cost: impl Fn(usize, usize) -> f64) -> Vec<(usize, usize)> {
    // 1-based as in the textbook formulation: column 0 is the virtual start of each search.
    let mut u = vec![0.0; n + 1];
    let mut v = vec![0.0; m + 1];
    let mut row_of = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        row_of[0] = i;
        let mut j0 = 0;
        let mut min_to = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = row_of[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0;
            for j in 1..=m {
                if used[j] {
                    continue;
                }
                let reduced = cost(i0 - 1, j - 1) - u[i0] - v[j];
                if reduced < min_to[j] {
                    min_to[j] = reduced;
                    way[j] = j0;
                }
                if min_to[j] < delta {
                    delta = min_to[j];
                    j1 = j;
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[row_of[j]] += delta;
                    v[j] -= delta;
                } else {
                    min_to[j] -= delta;
                }
            }
            j0 = j1;
            if row_of[j0] == 0 {
                break;
            }
        }
        while j0 != 0 {
            let j1 = way[j0];
            row_of[j0] = row_of[j1];
            j0 = j1;
        }
    }
    (1..=m)
        .filter(|&j| row_of[j] != 0)
        .map(|j| (row_of[j] - 1, j - 1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn total(weight: &[Vec<f64>], pairs: &[(usize, usize)]) -> f64 {
        pairs.iter().map(|&(r, c)| weight[r][c]).sum()
    }

    /// Every assignment by brute force, for small matrices.
    fn brute_force(weight: &[Vec<f64>], min: f64) -> f64 {
        fn go(weight: &[Vec<f64>], min: f64, row: usize, taken: &mut Vec<bool>) -> f64 {
            if row == weight.len() {
                return 0.0;
            }
            let mut best = go(weight, min, row + 1, taken);
            for c in 0..taken.len() {
                if !taken[c] && weight[row][c] >= min {
                    taken[c] = true;
                    best = best.max(weight[row][c] + go(weight, min, row + 1, taken));
                    taken[c] = false;
                }
            }
            best
        }
        let cols = weight.first().map_or(0, Vec::len);
        go(weight, min, 0, &mut vec![false; cols])
    }

    #[test]
    fn the_optimum_beats_the_greedy_choice() {
        // Greedy takes (0,0) = 0.9 and is left with (1,1) = 0.0; the optimum pairs across.
        let weight = vec![vec![0.9, 0.8], vec![0.7, 0.0]];
        assert_eq!(best_pairs(&weight, 0.5), vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn pairs_under_the_threshold_are_unmatched_and_empty_sides_match_nothing() {
        let weight = vec![vec![0.4, 0.9], vec![0.3, 0.2]];
        assert_eq!(best_pairs(&weight, 0.5), vec![(0, 1)]);
        assert!(best_pairs(&[], 0.5).is_empty());
        assert!(best_pairs(&[vec![], vec![]], 0.5).is_empty());
    }

    proptest! {
        #[test]
        fn matches_brute_force(
            rows in 1usize..5,
            cols in 1usize..5,
            cells in proptest::collection::vec(0.0f64..1.0, 25),
            min in 0.0f64..0.8,
        ) {
            let weight: Vec<Vec<f64>> =
                (0..rows).map(|r| (0..cols).map(|c| cells[r * 5 + c]).collect()).collect();
            let pairs = best_pairs(&weight, min);
            let mut seen_cols: Vec<usize> = pairs.iter().map(|p| p.1).collect();
            seen_cols.sort_unstable();
            seen_cols.dedup();
            prop_assert_eq!(seen_cols.len(), pairs.len());
            prop_assert!(pairs.iter().all(|&(r, c)| weight[r][c] >= min));
            let best = brute_force(&weight, min);
            prop_assert!((total(&weight, &pairs) - best).abs() < 1e-9);
        }
    }
}
