//! Token sampling over a logits slice, in llama.cpp's order: repeat penalty, then
//! top-k, top-p and min-p filtering, then temperature and a draw from a seeded RNG.
//! A temperature of zero or below is greedy decoding (after the repeat penalty).

use std::collections::VecDeque;

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::types::Sampling;

/// Samples tokens for one generation; remembers recent tokens for the repeat penalty.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: Sampling,
    rng: ChaCha8Rng,
    recent: VecDeque<u32>,
}

impl Sampler {
    pub fn new(params: &Sampling) -> Self {
        Self {
            params: *params,
            rng: ChaCha8Rng::seed_from_u64(params.seed),
            recent: VecDeque::new(),
        }
    }

    /// Record a token (prompt or generated) for the repeat penalty window.
    pub fn accept(&mut self, token: u32) {
        if self.params.repeat_last_n == 0 {
            return;
        }
        if self.recent.len() == self.params.repeat_last_n as usize {
            self.recent.pop_front();
        }
        self.recent.push_back(token);
    }

    /// Pick the next token from `logits` (one per vocabulary entry).
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let mut logits = logits.to_vec();
        let penalty = self.params.repeat_penalty;
        if penalty != 1.0 && penalty > 0.0 {
            let mut seen = self.recent.iter().copied().collect::<Vec<_>>();
            seen.sort_unstable();
            seen.dedup();
            for token in seen {
                if let Some(logit) = logits.get_mut(token as usize) {
                    // llama.cpp's rule: shrink positive logits, push negative ones further.
                    *logit = if *logit > 0.0 { *logit / penalty } else { *logit * penalty };
                }
            }
        }
        if self.params.temperature <= 0.0 {
            return argmax(&logits);
        }

        let mut candidates: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.is_nan())
            .map(|(id, &l)| (id as u32, l))
            .collect();
        candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        if self.params.top_k > 0 {
            candidates.truncate(self.params.top_k as usize);
        }
        let probabilities = softmax(&candidates, 1.0);
        if self.params.top_p < 1.0 {
            let mut total = 0.0;
            let keep = probabilities
                .iter()
                .position(|&p| {
                    total += p;
                    total >= self.params.top_p
                })
                .map_or(candidates.len(), |at| at + 1);
            candidates.truncate(keep.max(1));
        }
        if self.params.min_p > 0.0 {
            let floor = probabilities[0] * self.params.min_p;
            let keep =
                probabilities.iter().take(candidates.len()).take_while(|&&p| p >= floor).count();
            candidates.truncate(keep.max(1));
        }
        let probabilities = softmax(&candidates, self.params.temperature);
        // 24 random bits give a uniform float in [0, 1) without rounding up to 1.
        let mut draw = (self.rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
        for (&(token, _), p) in candidates.iter().zip(probabilities) {
            if draw < p {
                return token;
            }
            draw -= p;
        }
        candidates.last().map_or(0, |&(token, _)| token)
    }
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (index, &logit) in logits.iter().enumerate() {
        if logit > logits[best] {
            best = index;
        }
    }
    best as u32
}

/// Probabilities of `candidates` (sorted, highest first) at `temperature`.
fn softmax(candidates: &[(u32, f32)], temperature: f32) -> Vec<f32> {
    let Some(&(_, max)) = candidates.first() else { return Vec::new() };
    let weights: Vec<f32> =
        candidates.iter().map(|&(_, l)| ((l - max) / temperature).exp()).collect();
    let total: f32 = weights.iter().sum();
    weights.into_iter().map(|w| w / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32) -> Sampling {
        Sampling {
            temperature,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 7,
        }
    }

    #[test]
    fn zero_temperature_picks_the_largest_logit() {
        assert_eq!(Sampler::new(&params(0.0)).sample(&[0.1, 3.0, 2.9, -1.0]), 1);
    }

    #[test]
    fn the_repeat_penalty_can_move_the_greedy_choice() {
        let mut sampler = Sampler::new(&Sampling { repeat_penalty: 2.0, ..params(0.0) });
        sampler.accept(1);
        assert_eq!(sampler.sample(&[0.1, 3.0, 2.9, -1.0]), 2);
    }

    #[test]
    fn the_same_seed_gives_the_same_draws_and_draws_follow_the_distribution() {
        let logits = [1.0, 1.0, 0.0, -10.0];
        let draws = |seed| {
            let mut sampler = Sampler::new(&Sampling { seed, ..params(1.0) });
            (0..2000).map(|_| sampler.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        let counts = draws(3).iter().fold([0usize; 4], |mut counts, &t| {
            counts[t as usize] += 1;
            counts
        });
        // Expected shares: 0.42, 0.42, 0.16, ~0.
        assert!((700..1000).contains(&counts[0]) && (700..1000).contains(&counts[1]), "{counts:?}");
        assert!((200..450).contains(&counts[2]) && counts[3] < 5, "{counts:?}");
    }

    #[test]
    fn top_k_top_p_and_min_p_each_remove_the_tail() {
        let logits = [2.0, 1.9, 0.0, -0.5];
        let only = |p: Sampling| {
            let mut sampler = Sampler::new(&p);
            let mut seen: Vec<u32> = (0..500).map(|_| sampler.sample(&logits)).collect();
            seen.sort_unstable();
            seen.dedup();
            seen
        };
        assert_eq!(only(Sampling { top_k: 2, ..params(1.0) }), [0, 1]);
        assert_eq!(only(Sampling { top_p: 0.7, ..params(1.0) }), [0, 1]);
        assert_eq!(only(Sampling { min_p: 0.5, ..params(1.0) }), [0, 1]);
    }
}
