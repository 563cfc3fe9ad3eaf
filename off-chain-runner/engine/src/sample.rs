//! Picking the next token: greedy, or seeded temperature / top-p sampling (ChaCha8, so a
//! sampled generation re-runs exactly from its seed).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub struct Sampler {
    rng: ChaCha8Rng,
    temperature: f32,
    top_p: f32,
}

impl Sampler {
    pub fn new(temperature: f32, top_p: f32, seed: u64) -> Sampler {
        Sampler {
            rng: ChaCha8Rng::seed_from_u64(seed),
            temperature,
            top_p,
        }
    }

    /// Greedy: the pick is the argmax, no randomness (a step may make it on the GPU).
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    pub fn pick(&mut self, logits: &[f32]) -> u32 {
        if self.is_greedy() {
            return crate::ops::argmax::cpu(logits);
        }
        let t = f64::from(self.temperature);
        let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, (f64::from(l - top) / t).exp()))
            .collect();
        let total: f64 = probs.iter().map(|p| p.1).sum();
        let cut = nucleus(&mut probs, total, f64::from(self.top_p));
        let mass: f64 = probs[..cut].iter().map(|p| p.1).sum();
        let mut r = self.rng.random::<f64>() * mass;
        for p in &probs[..cut] {
            r -= p.1;
            if r <= 0.0 {
                return p.0;
            }
        }
        probs[cut - 1].0
    }
}

/// Most probable first, ties by id: a total order, so the cut and the draw are reproducible.
fn by_probability(a: &(u32, f64), b: &(u32, f64)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Orders the front of `probs` by probability and returns how many of them top-p keeps:
/// the fewest whose share of `total`, added in that order, reaches `top_p` (all if none).
/// The nucleus is mostly a few dozen of a vocabulary's tens of thousands, so only the most
/// probable `k` are sorted, `k` doubling until they hold it: the same prefix a full sort
/// gives, hence the same cut and the same draw, in linear time instead of a sort of all.
fn nucleus(probs: &mut [(u32, f64)], total: f64, top_p: f64) -> usize {
    let (mut sorted, mut kept) = (0, 0.0);
    let mut k = 64.min(probs.len());
    loop {
        // The first `sorted` are the most probable, in order; bring the next ones forward.
        let rest = &mut probs[sorted..];
        if k - sorted < rest.len() {
            rest.select_nth_unstable_by(k - sorted - 1, by_probability);
        }
        rest[..k - sorted].sort_by(by_probability);
        for (i, p) in probs[sorted..k].iter().enumerate() {
            kept += p.1 / total;
            if kept >= top_p {
                return sorted + i + 1;
            }
        }
        if k == probs.len() {
            return k;
        }
        sorted = k;
        k = (2 * k).min(probs.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `pick` did before the nucleus was found by partial sorting: a sort of all.
    fn pick_by_full_sort(
        rng: &mut ChaCha8Rng,
        logits: &[f32],
        temperature: f32,
        top_p: f32,
    ) -> u32 {
        let t = f64::from(temperature);
        let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, (f64::from(l - top) / t).exp()))
            .collect();
        let total: f64 = probs.iter().map(|p| p.1).sum();
        probs.sort_by(by_probability);
        let mut kept = 0.0;
        let mut cut = probs.len();
        for (i, p) in probs.iter().enumerate() {
            kept += p.1 / total;
            if kept >= f64::from(top_p) {
                cut = i + 1;
                break;
            }
        }
        let mass: f64 = probs[..cut].iter().map(|p| p.1).sum();
        let mut r = rng.random::<f64>() * mass;
        for p in &probs[..cut] {
            r -= p.1;
            if r <= 0.0 {
                return p.0;
            }
        }
        probs[cut - 1].0
    }

    #[test]
    fn the_partial_sort_draws_what_a_full_sort_draws() {
        let mut gen = ChaCha8Rng::seed_from_u64(42);
        for case in 0..60 {
            let vocab = [5, 63, 64, 65, 300, 5000][case % 6];
            // Peaked, flat and tied logits: nuclei of one token up to the whole vocabulary.
            let spread = [0.1f32, 3.0, 12.0][case % 3];
            let logits: Vec<f32> = (0..vocab)
                .map(|i| {
                    if case % 5 == 0 {
                        (i % 4) as f32
                    } else {
                        gen.random::<f32>() * spread
                    }
                })
                .collect();
            for (temperature, top_p) in
                [(0.7, 0.9), (1.0, 0.5), (1.5, 0.99), (1.0, 1.0), (0.3, 1e-4)]
            {
                let seed = gen.random::<u64>();
                let mut ours = Sampler::new(temperature, top_p, seed);
                let mut reference = ChaCha8Rng::seed_from_u64(seed);
                for _ in 0..8 {
                    assert_eq!(
                        ours.pick(&logits),
                        pick_by_full_sort(&mut reference, &logits, temperature, top_p),
                        "case {case}, vocabulary {vocab}, temperature {temperature}, top-p {top_p}"
                    );
                }
            }
        }
    }

    #[test]
    fn greedy_takes_the_first_maximum_and_sampling_follows_the_seed() {
        assert_eq!(crate::ops::argmax::cpu(&[0.0, 2.0, 2.0, 1.0]), 1);
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = Sampler::new(0.8, 0.9, seed);
            (0..20).map(|_| s.pick(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let mut narrow = Sampler::new(1.0, 0.0001, 1);
        assert!(
            (0..10).all(|_| narrow.pick(&logits) % 7 == 6),
            "top-p keeps only the best"
        );
    }
}
