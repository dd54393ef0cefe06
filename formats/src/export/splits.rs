//! Which subset (train, val, …) each exported image goes to.
//!
//! Counts are exact: each subset gets its share of the images rounded by largest remainder,
//! and every requested subset gets at least one image when there are as many images as
//! subsets, so a `val` asked for is never silently empty (training code would then validate on
//! nothing, or on training images). Which images go where is a seeded shuffle: the same seed
//! and images give the same subsets, whatever order the images are read in.

use std::collections::{BTreeMap, HashMap};

use sha2::Digest;
use tessera_domain::Sha256;

/// How many images each subset gets, in name order.
pub fn counts(shares: &BTreeMap<String, f64>, images: usize) -> Vec<(String, usize)> {
    let total: f64 = shares.values().sum();
    let quotas: Vec<(&String, f64)> = shares
        .iter()
        .map(|(name, share)| (name, images as f64 * share / total))
        .collect();
    let mut counts: Vec<(String, usize)> = quotas
        .iter()
        .map(|(name, q)| ((*name).clone(), q.floor() as usize))
        .collect();
    let given: usize = counts.iter().map(|(_, n)| n).sum();
    // The images left over go to the largest fractional parts (the first name on a tie).
    let mut by_remainder: Vec<usize> = (0..quotas.len()).collect();
    by_remainder.sort_by(|&a, &b| {
        let fa = quotas[a].1 - quotas[a].1.floor();
        let fb = quotas[b].1 - quotas[b].1.floor();
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    for &i in by_remainder.iter().take(images.saturating_sub(given)) {
        counts[i].1 += 1;
    }
    // A requested subset is never empty while another has images to spare.
    if images >= counts.len() {
        while let Some(empty) = counts.iter().position(|(_, n)| *n == 0) {
            let Some(largest) =
                (0..counts.len()).max_by(|&a, &b| counts[a].1.cmp(&counts[b].1).then(b.cmp(&a)))
            else {
                break;
            };
            counts[largest].1 -= 1;
            counts[empty].1 += 1;
        }
    }
    counts
}

/// The subset of every image in `images`: the images in seeded order, cut into runs of the
/// subsets' counts.
pub fn assign(
    shares: &BTreeMap<String, f64>,
    seed: u64,
    images: &[Sha256],
) -> (HashMap<Sha256, String>, Vec<(String, usize)>) {
    let counts = counts(shares, images.len());
    let mut order: Vec<([u8; 32], Sha256)> = images
        .iter()
        .map(|sha| {
            let key = sha2::Sha256::new()
                .chain_update(seed.to_be_bytes())
                .chain_update(sha.0)
                .finalize()
                .into();
            (key, *sha)
        })
        .collect();
    order.sort_unstable();
    let mut subsets = HashMap::with_capacity(images.len());
    let mut next = order.into_iter().map(|(_, sha)| sha);
    for (name, count) in &counts {
        for sha in next.by_ref().take(*count) {
            subsets.insert(sha, name.clone());
        }
    }
    (subsets, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(n, s)| (n.to_string(), *s)).collect()
    }

    #[test]
    fn counts_are_exact_and_no_requested_subset_is_left_empty() {
        let split = shares(&[("train", 0.8), ("val", 0.2)]);
        assert_eq!(
            counts(&split, 15),
            [("train".to_string(), 12), ("val".to_string(), 3)]
        );
        assert_eq!(
            counts(&split, 2),
            [("train".to_string(), 1), ("val".to_string(), 1)]
        );
        let three = shares(&[("test", 0.05), ("train", 0.9), ("val", 0.05)]);
        let c = counts(&three, 7);
        assert_eq!(c.iter().map(|(_, n)| n).sum::<usize>(), 7);
        assert!(c.iter().all(|(_, n)| *n >= 1), "{c:?}");
        assert_eq!(counts(&split, 1).iter().map(|(_, n)| n).sum::<usize>(), 1);
    }

    #[test]
    fn the_same_seed_gives_the_same_subsets_in_any_order() {
        let split = shares(&[("train", 0.8), ("val", 0.2)]);
        let images: Vec<Sha256> = (0..15u8).map(|i| Sha256([i; 32])).collect();
        for seed in [0, 7, 42, 1234] {
            let (a, counts) = assign(&split, seed, &images);
            let mut reversed = images.clone();
            reversed.reverse();
            let (b, _) = assign(&split, seed, &reversed);
            assert_eq!(a, b);
            assert_eq!(a.values().filter(|s| *s == "val").count(), 3, "seed {seed}");
            assert_eq!(counts[1], ("val".to_string(), 3));
        }
        let (a, _) = assign(&split, 1, &images);
        let (b, _) = assign(&split, 2, &images);
        assert_ne!(a, b, "another seed, other subsets");
    }
}
