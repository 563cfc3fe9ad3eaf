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

    pub fn pick(&mut self, logits: &[f32]) -> u32 {
        if self.temperature <= 0.0 {
            return argmax(logits);
        }
        let t = f64::from(self.temperature);
        let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, (f64::from(l - top) / t).exp()))
            .collect();
        let total: f64 = probs.iter().map(|p| p.1).sum();
        // Most probable first, ties by id, so the cut and the draw are reproducible.
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut kept = 0.0;
        let mut cut = probs.len();
        for (i, p) in probs.iter().enumerate() {
            kept += p.1 / total;
            if kept >= f64::from(self.top_p) {
                cut = i + 1;
                break;
            }
        }
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

/// Index of the largest logit, the lowest index on ties.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum_and_sampling_follows_the_seed() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0, 1.0]), 1);
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
