//! Who is looked up, in which order: a seeded sequence of person indices
//! (uniform or Zipf), made once so both paths see exactly the same lookups.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::scenario::Choice;

/// Zipf over ranks `0..n`: rank `k` (0-based) has weight `1/(k+1)^s`. Sampled by
/// a binary search in the cumulative weights: exact, and `n` is at most a few
/// hundred thousand persons, so the table is small.
#[derive(Debug, Clone)]
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    /// `None` for `n == 0` or an `s` that is not a positive finite number.
    pub fn new(n: usize, s: f64) -> Option<Zipf> {
        if n == 0 || !(s.is_finite() && s > 0.0) {
            return None;
        }
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|k| {
                total += (k as f64).powf(-s);
                total
            })
            .collect();
        Some(Zipf { cumulative })
    }

    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let u = rng.random::<f64>() * total;
        // The first rank whose cumulative weight exceeds u.
        self.cumulative
            .partition_point(|&c| c <= u)
            .min(self.cumulative.len() - 1)
    }
}

/// `count` person indices in `0..persons`, chosen by `choice` from `seed`.
pub fn sequence(choice: Choice, persons: usize, count: usize, seed: u64) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(seed);
    if persons == 0 {
        return Vec::new();
    }
    match choice {
        Choice::Uniform => (0..count)
            .map(|_| rng.random_range(0..persons) as u32)
            .collect(),
        Choice::Zipf { s } => match Zipf::new(persons, s) {
            Some(z) => (0..count).map(|_| z.sample(&mut rng) as u32).collect(),
            None => Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_favours_low_ranks_in_the_expected_proportion() {
        let z = Zipf::new(1000, 1.0).expect("valid zipf");
        let mut rng = StdRng::seed_from_u64(1);
        let mut counts = vec![0u32; 1000];
        for _ in 0..200_000 {
            counts[z.sample(&mut rng)] += 1;
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[9]);
        // With s = 1, rank 1 is picked twice as often as rank 2 (within noise).
        let ratio = f64::from(counts[0]) / f64::from(counts[1]);
        assert!((1.8..2.2).contains(&ratio), "ratio {ratio}");
        // Rank 1 has weight 1/H(1000) ≈ 13.4 % of the draws.
        let share = f64::from(counts[0]) / 200_000.0;
        assert!((0.125..0.145).contains(&share), "share {share}");
        assert!(counts[999] < counts[0] / 100);
    }

    #[test]
    fn zipf_rejects_empty_or_bad_parameters() {
        assert!(Zipf::new(0, 1.0).is_none());
        assert!(Zipf::new(10, 0.0).is_none());
        assert!(Zipf::new(10, f64::NAN).is_none());
        let one = Zipf::new(1, 2.0).expect("one rank");
        let mut rng = StdRng::seed_from_u64(3);
        assert!((0..100).all(|_| one.sample(&mut rng) == 0));
    }

    #[test]
    fn sequences_are_seeded_and_in_range() {
        let a = sequence(Choice::Uniform, 50, 10_000, 7);
        assert_eq!(a.len(), 10_000);
        assert!(a.iter().all(|&i| i < 50));
        assert_eq!(a, sequence(Choice::Uniform, 50, 10_000, 7));
        assert_ne!(a, sequence(Choice::Uniform, 50, 10_000, 8));
        // Uniform touches every person in 10,000 draws from 50.
        let mut seen = [false; 50];
        a.iter().for_each(|&i| seen[i as usize] = true);
        assert!(seen.iter().all(|&s| s));
        let z = sequence(Choice::Zipf { s: 1.2 }, 50, 1000, 7);
        assert!(z.iter().all(|&i| i < 50));
        assert!(sequence(Choice::Uniform, 0, 10, 1).is_empty());
    }
}
