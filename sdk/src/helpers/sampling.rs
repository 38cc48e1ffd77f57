//! Token sampling over a logits slice, in llama.cpp's order: logit bias, then the
//! repeat, frequency and presence penalties, then top-k, top-p and min-p filtering,
//! then temperature and a draw from a seeded RNG. A temperature of zero or below is
//! greedy decoding (after the bias and the penalties).

use std::collections::VecDeque;

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::types::{GenerateRequest, LogitBias, Sampling};

/// Samples tokens for one generation; remembers recent tokens for the penalties.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: Sampling,
    presence_penalty: f32,
    frequency_penalty: f32,
    logit_bias: Vec<LogitBias>,
    rng: ChaCha8Rng,
    recent: VecDeque<u32>,
}

impl Sampler {
    pub fn new(params: &Sampling) -> Self {
        Self {
            params: *params,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(params.seed),
            recent: VecDeque::new(),
        }
    }

    /// A sampler for all a request asks: its sampling settings, OpenAI's presence and
    /// frequency penalties and its logit bias.
    pub fn for_request(request: &GenerateRequest) -> Self {
        Self {
            presence_penalty: request.presence_penalty,
            frequency_penalty: request.frequency_penalty,
            logit_bias: request.logit_bias.to_vec(),
            ..Self::new(&request.sampling)
        }
    }

    /// Record a token (prompt or generated) for the penalties' window.
    pub fn accept(&mut self, token: u32) {
        if self.params.repeat_last_n == 0 {
            return;
        }
        if self.recent.len() == self.params.repeat_last_n as usize {
            self.recent.pop_front();
        }
        self.recent.push_back(token);
    }

    /// Whether [`Sampler::sample`] is the argmax of the logits as they come: greedy,
    /// with no bias and no active penalty. An engine may then pick the token where
    /// the logits are (on a GPU) and read back only it.
    pub fn is_plain_greedy(&self) -> bool {
        self.params.temperature <= 0.0 && self.takes_logits_as_they_come()
    }

    /// Top-k sampling's settings where [`Sampler::sample`] needs only the `top_k`
    /// largest logits as they come: sampling at a temperature with top-k, no bias and
    /// no active penalty. An engine may then find those where the logits are (on a
    /// GPU), and read back only them and sample with [`Sampler::sample_candidates`], or
    /// sample them there too as [`CandidateSampling::pick`] does, with the draws of
    /// [`Sampler::next_draw`].
    pub fn top_k_only(&self) -> Option<CandidateSampling> {
        (self.params.temperature > 0.0 && self.params.top_k > 0 && self.takes_logits_as_they_come())
            .then(|| self.candidate_sampling())
    }

    fn candidate_sampling(&self) -> CandidateSampling {
        let Sampling { top_k, top_p, min_p, temperature, .. } = self.params;
        CandidateSampling { top_k, top_p, min_p, temperature }
    }

    /// The uniform draw in [0, 1) the next sampled token takes: one a token, in order.
    pub fn next_draw(&mut self) -> f32 {
        // 24 random bits give a uniform float in [0, 1) without rounding up to 1.
        (self.rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }

    /// No logit bias and no active penalty.
    fn takes_logits_as_they_come(&self) -> bool {
        self.logit_bias.is_empty() && !self.penalises()
    }

    /// Whether a penalty is active: a repeat penalty other than 1 (0 or below is none),
    /// or a frequency or presence penalty.
    fn penalises(&self) -> bool {
        let repeat = self.params.repeat_penalty;
        !(repeat <= 0.0 || repeat == 1.0)
            || self.frequency_penalty != 0.0
            || self.presence_penalty != 0.0
    }

    /// Pick the next token from `logits` (one per vocabulary entry).
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let mut logits = logits.to_vec();
        self.adjustments().apply(&mut logits);
        if self.params.temperature <= 0.0 {
            return argmax(&logits);
        }
        let mut candidates: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.is_nan())
            .map(|(id, &l)| (id as u32, l))
            .collect();
        // Top-k needs its k largest in order, not the whole vocabulary sorted: a
        // selection first takes a step's sorting of 128 256 logits from milliseconds
        // to a fraction of one.
        let largest_first = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1);
        let k = self.params.top_k as usize;
        if k > 0 && k < candidates.len() {
            candidates.select_nth_unstable_by(k - 1, largest_first);
            candidates.truncate(k);
        }
        candidates.sort_unstable_by(largest_first);
        self.sample_candidates(&candidates)
    }

    /// What this sampler does to the logits before it ranks them: the request's
    /// logit bias, then the penalties over its recent tokens.
    pub fn adjustments(&self) -> LogitAdjustments {
        let repeat = self.params.repeat_penalty;
        let mut seen = Vec::new();
        if self.penalises() {
            let mut recent = self.recent.iter().copied().collect::<Vec<_>>();
            recent.sort_unstable();
            seen = recent.chunk_by(|a, b| a == b).map(|run| (run[0], run.len() as u32)).collect();
        }
        LogitAdjustments {
            bias: self.logit_bias.clone(),
            seen,
            repeat: if repeat > 0.0 { repeat } else { 1.0 },
            frequency: self.frequency_penalty,
            presence: self.presence_penalty,
        }
    }

    /// Where the logits need adjusting ([`Sampler::adjustments`]) and the draw needs no
    /// more than the largest few of them: those adjustments, and how many of the largest
    /// adjusted logits [`Sampler::sample_candidates`] needs (top-k's `k`, or 1 for
    /// greedy decoding). An engine may then adjust the logits where they are, find
    /// those there and read back only them.
    pub fn adjusted_top_k(&self) -> Option<(LogitAdjustments, u32)> {
        let k = if self.params.temperature <= 0.0 { 1 } else { self.params.top_k };
        (k > 0 && !self.takes_logits_as_they_come()).then(|| (self.adjustments(), k))
    }

    /// [`Sampler::sample`] from `candidates` alone: the largest logits (adjusted, where
    /// [`Sampler::adjusted_top_k`] says so) with their token ids, largest first, at
    /// least the top-k's `k` of them where [`Sampler::top_k_only`] or
    /// [`Sampler::adjusted_top_k`] says so, all of them otherwise. Greedy decoding
    /// takes the first.
    pub fn sample_candidates(&mut self, candidates: &[(u32, f32)]) -> u32 {
        if self.params.temperature <= 0.0 {
            return candidates.first().map_or(0, |&(token, _)| token);
        }
        let draw = self.next_draw();
        self.candidate_sampling().pick(candidates, draw)
    }
}

/// How a sampler draws from the largest logits, in llama.cpp's order: the first
/// `top_k` (all where 0), cut by `top_p` and `min_p` on their probabilities at a
/// temperature of 1, then one drawn at `temperature`. Written once, here: an engine
/// that samples on its device does these steps in this order ([`Sampler::top_k_only`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CandidateSampling {
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub temperature: f32,
}

impl CandidateSampling {
    /// The token `draw` (uniform in [0, 1)) picks from `candidates`, the largest logits
    /// with their token ids, largest first.
    pub fn pick(&self, candidates: &[(u32, f32)], mut draw: f32) -> u32 {
        let mut candidates = candidates.to_vec();
        if self.top_k > 0 {
            candidates.truncate(self.top_k as usize);
        }
        let probabilities = softmax(&candidates, 1.0);
        if self.top_p < 1.0 {
            let mut total = 0.0;
            let keep = probabilities
                .iter()
                .position(|&p| {
                    total += p;
                    total >= self.top_p
                })
                .map_or(candidates.len(), |at| at + 1);
            candidates.truncate(keep.max(1));
        }
        if self.min_p > 0.0 {
            let floor = probabilities[0] * self.min_p;
            let keep =
                probabilities.iter().take(candidates.len()).take_while(|&&p| p >= floor).count();
            candidates.truncate(keep.max(1));
        }
        let probabilities = softmax(&candidates, self.temperature);
        for (&(token, _), p) in candidates.iter().zip(probabilities) {
            if draw < p {
                return token;
            }
            draw -= p;
        }
        candidates.last().map_or(0, |&(token, _)| token)
    }
}

/// What a sampler does to the logits before ranking them, in llama.cpp's order: each
/// logit bias added in turn, then for each token seen in the recent window the repeat
/// penalty (shrinking a positive logit, pushing a negative one further), then the
/// frequency penalty once per occurrence and the presence penalty once. Written once,
/// here: an engine that adjusts the logits on its device does these steps in this
/// order ([`Sampler::adjusted_top_k`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LogitAdjustments {
    /// Added in this order; a token outside the vocabulary is ignored.
    pub bias: Vec<LogitBias>,
    /// The distinct tokens of the recent window with their occurrences, by token id;
    /// empty where no penalty is active.
    pub seen: Vec<(u32, u32)>,
    /// 1 where there is none.
    pub repeat: f32,
    pub frequency: f32,
    pub presence: f32,
}

impl LogitAdjustments {
    /// A seen token's logit after the penalties, for `count` occurrences.
    pub fn penalise(&self, logit: f32, count: u32) -> f32 {
        let logit = if logit > 0.0 { logit / self.repeat } else { logit * self.repeat };
        logit - self.deduction(count)
    }

    /// What the frequency and presence penalties take from the logit of a token seen
    /// `count` times, after the repeat penalty.
    pub fn deduction(&self, count: u32) -> f32 {
        count as f32 * self.frequency + self.presence
    }

    /// Adjust `logits` (one per vocabulary entry) in place.
    pub fn apply(&self, logits: &mut [f32]) {
        for bias in &self.bias {
            if let Some(logit) = logits.get_mut(bias.token as usize) {
                *logit += bias.bias;
            }
        }
        for &(token, count) in &self.seen {
            if let Some(logit) = logits.get_mut(token as usize) {
                *logit = self.penalise(*logit, count);
            }
        }
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
    fn only_greedy_sampling_without_bias_or_penalties_is_plain_greedy() {
        assert!(Sampler::new(&params(0.0)).is_plain_greedy());
        assert!(!Sampler::new(&params(0.7)).is_plain_greedy());
        assert!(!Sampler::new(&Sampling { repeat_penalty: 1.1, ..params(0.0) }).is_plain_greedy());
        let mut biased = Sampler::new(&params(0.0));
        biased.logit_bias.push(LogitBias { token: 3, bias: 1.0 });
        assert!(!biased.is_plain_greedy());
    }

    #[test]
    fn the_repeat_penalty_can_move_the_greedy_choice() {
        let mut sampler = Sampler::new(&Sampling { repeat_penalty: 2.0, ..params(0.0) });
        sampler.accept(1);
        assert_eq!(sampler.sample(&[0.1, 3.0, 2.9, -1.0]), 2);
    }

    #[test]
    fn frequency_and_presence_penalties_count_each_recent_occurrence() {
        let request = |presence_penalty, frequency_penalty| GenerateRequest {
            sampling: params(0.0),
            presence_penalty,
            frequency_penalty,
            ..GenerateRequest::default()
        };
        let logits = [0.0, 3.0, 2.5, 2.0];
        let seen = [1, 1, 1, 2];
        // Token 1, seen three times: 3.0 - 3 × 0.2 = 2.4, still above token 2's 2.3.
        let mut sampler = Sampler::for_request(&request(0.0, 0.2));
        seen.into_iter().for_each(|token| sampler.accept(token));
        assert_eq!(sampler.sample(&logits), 1);
        // 3.0 - 3 × 0.3 = 2.1 falls below token 2's 2.5 - 0.3 = 2.2.
        let mut sampler = Sampler::for_request(&request(0.0, 0.3));
        seen.into_iter().for_each(|token| sampler.accept(token));
        assert_eq!(sampler.sample(&logits), 2);
        // Presence counts once: 3.0 - 1.5 and 2.5 - 1.5 both fall below the unseen 2.0.
        let mut sampler = Sampler::for_request(&request(1.5, 0.0));
        seen.into_iter().for_each(|token| sampler.accept(token));
        assert_eq!(sampler.sample(&logits), 3);
    }

    #[test]
    fn a_logit_bias_of_minus_a_hundred_bans_a_token_and_a_positive_one_favours_it() {
        let logits = [0.0, 3.0, 2.5];
        let request = |bias: Vec<LogitBias>| GenerateRequest {
            sampling: params(0.0),
            logit_bias: bias.into(),
            ..GenerateRequest::default()
        };
        let ban = request(vec![LogitBias { token: 1, bias: -100.0 }]);
        assert_eq!(Sampler::for_request(&ban).sample(&logits), 2);
        let favour = request(vec![LogitBias { token: 0, bias: 5.0 }]);
        assert_eq!(Sampler::for_request(&favour).sample(&logits), 0);
        let out_of_range = request(vec![LogitBias { token: 99, bias: 5.0 }]);
        assert_eq!(Sampler::for_request(&out_of_range).sample(&logits), 1);
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

    #[test]
    fn sampling_the_top_k_candidates_draws_what_sampling_every_logit_draws() {
        let logits: Vec<f32> = (0..500).map(|i| ((i * 7919) % 1000) as f32 / 100.0).collect();
        let mut ranked: Vec<(u32, f32)> =
            logits.iter().enumerate().map(|(id, &l)| (id as u32, l)).collect();
        ranked.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        for sampling in [
            Sampling { top_k: 40, ..params(0.8) },
            Sampling { top_k: 40, top_p: 0.9, min_p: 0.05, ..params(1.3) },
            Sampling { top_k: 1, ..params(1.0) },
        ] {
            let (mut all, mut top) = (Sampler::new(&sampling), Sampler::new(&sampling));
            assert_eq!(top.top_k_only().map(|only| only.top_k), Some(sampling.top_k));
            let candidates = &ranked[..sampling.top_k as usize];
            for _ in 0..200 {
                assert_eq!(all.sample(&logits), top.sample_candidates(candidates));
            }
        }
    }

    #[test]
    fn picking_with_the_sampler_s_draws_in_order_is_sampling_the_candidates() {
        let sampling = Sampling { top_k: 40, top_p: 0.9, min_p: 0.05, ..params(0.8) };
        let (mut sampled, mut drawn) = (Sampler::new(&sampling), Sampler::new(&sampling));
        let only = drawn.top_k_only().expect("top-k alone");
        let candidates: Vec<(u32, f32)> = (0..40).map(|i| (i, 5.0 - i as f32 * 0.1)).collect();
        let picks: Vec<u32> = (0..100).map(|_| sampled.sample_candidates(&candidates)).collect();
        let drawn: Vec<u32> = (0..100).map(|_| only.pick(&candidates, drawn.next_draw())).collect();
        assert_eq!(picks, drawn);
        assert!(picks.iter().any(|&token| token != picks[0]), "the draws pick different tokens");
    }

    /// A request with every adjustment: two biases of one token, a ban, penalties over
    /// a window with repeats, the sampler having seen `window`.
    fn adjusted(sampling: Sampling, window: &[u32]) -> Sampler {
        let request = GenerateRequest {
            sampling: Sampling { repeat_penalty: 1.3, ..sampling },
            presence_penalty: 0.4,
            frequency_penalty: 0.25,
            logit_bias: vec![
                LogitBias { token: 7, bias: 2.5 },
                LogitBias { token: 7, bias: -0.75 },
                LogitBias { token: 3, bias: -100.0 },
                LogitBias { token: 9999, bias: 1.0 },
            ]
            .into(),
            ..GenerateRequest::default()
        };
        let mut sampler = Sampler::for_request(&request);
        window.iter().for_each(|&token| sampler.accept(token));
        sampler
    }

    #[test]
    fn sampling_the_top_k_of_adjusted_logits_draws_what_sampling_every_logit_draws() {
        let logits: Vec<f32> = (0..500).map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 4.0).collect();
        let window: Vec<u32> = (0..64).map(|i| (i * 37 % 23) * 19 % 500).collect();
        for sampling in [
            Sampling { top_k: 40, ..params(0.8) },
            Sampling { top_k: 40, top_p: 0.9, min_p: 0.05, ..params(1.3) },
            Sampling { top_k: 5, ..params(0.0) },
        ] {
            let (mut all, mut top) = (adjusted(sampling, &window), adjusted(sampling, &window));
            let (adjustments, k) = top.adjusted_top_k().expect("adjusted top-k");
            assert_eq!(k, if sampling.temperature > 0.0 { sampling.top_k } else { 1 });
            assert_eq!(adjustments.seen.iter().map(|&(_, count)| count).sum::<u32>(), 64);
            let mut adjusted_logits = logits.clone();
            adjustments.apply(&mut adjusted_logits);
            let mut ranked: Vec<(u32, f32)> =
                adjusted_logits.iter().enumerate().map(|(id, &l)| (id as u32, l)).collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
            for _ in 0..200 {
                assert_eq!(all.sample(&logits), top.sample_candidates(&ranked[..k as usize]));
            }
        }
    }

    #[test]
    fn adjustments_add_each_bias_in_turn_then_penalise_each_seen_token_once() {
        let sampler = adjusted(params(0.0), &[7, 7, 2]);
        let adjustments = sampler.adjustments();
        assert_eq!(adjustments.seen, [(2, 1), (7, 2)]);
        let mut logits = [1.0, 1.0, 2.6, 0.5, 1.0, 1.0, 1.0, -1.0];
        adjustments.apply(&mut logits);
        // Token 7: -1 + 2.5 - 0.75 = 0.75, / 1.3, - (2 × 0.25 + 0.4).
        assert_eq!(logits[7], 0.75 / 1.3 - 0.9);
        assert_eq!(logits[2], 2.6 / 1.3 - 0.65);
        assert_eq!(logits[3], -99.5);
        assert_eq!(logits[0], 1.0);
        // Nothing to adjust: the plain paths need no adjusted top-k.
        assert!(Sampler::new(&params(0.7)).adjusted_top_k().is_none());
        assert!(Sampler::new(&Sampling { top_k: 40, ..params(0.7) }).adjusted_top_k().is_none());
        // Every logit matters to sampling without top-k.
        assert!(adjusted(Sampling { top_k: 0, ..params(0.7) }, &[]).adjusted_top_k().is_none());
    }

    #[test]
    fn only_sampling_at_a_temperature_with_top_k_and_nothing_else_needs_only_the_top_k() {
        let top_k =
            |sampling: Sampling| Sampler::new(&sampling).top_k_only().map(|only| only.top_k);
        assert_eq!(top_k(Sampling { top_k: 40, ..params(0.7) }), Some(40));
        assert_eq!(top_k(Sampling { top_k: 0, ..params(0.7) }), None);
        assert_eq!(top_k(Sampling { top_k: 40, ..params(0.0) }), None);
        assert_eq!(top_k(Sampling { top_k: 40, repeat_penalty: 1.1, ..params(0.7) }), None);
        let biased = GenerateRequest {
            sampling: Sampling { top_k: 40, ..params(0.7) },
            logit_bias: vec![LogitBias { token: 3, bias: 1.0 }].into(),
            ..GenerateRequest::default()
        };
        assert!(Sampler::for_request(&biased).top_k_only().is_none());
        let penalised = GenerateRequest {
            sampling: Sampling { top_k: 40, ..params(0.7) },
            presence_penalty: 0.5,
            ..GenerateRequest::default()
        };
        assert!(Sampler::for_request(&penalised).top_k_only().is_none());
    }
}
