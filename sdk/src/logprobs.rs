//! Log-probabilities from raw logits, as every backend reports them: the natural
//! logarithm of the softmax of the model's own logits, before any sampling setting
//! (temperature, penalties, bias), as OpenAI and llama-server report them.

/// The log-probability of `chosen` among `logits`, and the `top` likeliest tokens with
/// theirs, most likely first (ties by the lower id). `None` when `chosen` is out of
/// range or a logit is not finite.
pub fn token_logprobs(logits: &[f32], chosen: u32, top: usize) -> Option<(f32, Vec<(u32, f32)>)> {
    let chosen_logit = *logits.get(chosen as usize)?;
    if !logits.iter().all(|logit| logit.is_finite()) {
        return None;
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // In f64: a 150k-entry vocabulary sums many small terms.
    let sum: f64 = logits.iter().map(|&logit| f64::from(logit - max).exp()).sum();
    let log_total = max + sum.ln() as f32;
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (id, &logit) in logits.iter().enumerate() {
            if best.len() == top && logit <= best[top - 1].1 {
                continue;
            }
            let at = best.partition_point(|&(_, kept)| kept >= logit);
            best.insert(at, (id as u32, logit));
            best.truncate(top);
        }
    }
    let top = best.into_iter().map(|(id, logit)| (id, logit - log_total)).collect();
    Some((chosen_logit - log_total, top))
}

#[cfg(test)]
mod tests {
    use super::token_logprobs;

    #[test]
    fn logprobs_are_the_log_softmax_of_the_logits_with_the_likeliest_first() {
        let logits = [1.0f32, 3.0, 2.0, 3.0];
        let (chosen, top) = token_logprobs(&logits, 2, 3).unwrap();
        let total: f32 = logits.iter().map(|l| l.exp()).sum();
        assert!((chosen - (2.0f32.exp() / total).ln()).abs() < 1e-6);
        let ids: Vec<u32> = top.iter().map(|&(id, _)| id).collect();
        assert_eq!(ids, [1, 3, 2], "ties keep the lower id first");
        assert!((top[0].1 - (3.0f32.exp() / total).ln()).abs() < 1e-6);
        let probabilities: f32 = logits.iter().map(|l| l.exp() / total).sum();
        assert!((probabilities - 1.0).abs() < 1e-6);
    }

    #[test]
    fn no_alternatives_asked_gives_the_chosen_token_alone() {
        let (chosen, top) = token_logprobs(&[0.0, 0.0], 1, 0).unwrap();
        assert!((chosen - 0.5f32.ln()).abs() < 1e-6);
        assert!(top.is_empty());
    }

    #[test]
    fn a_token_out_of_range_or_a_logit_that_is_not_finite_gives_nothing() {
        assert_eq!(token_logprobs(&[0.0, 1.0], 2, 1), None);
        assert_eq!(token_logprobs(&[0.0, f32::NAN], 0, 1), None);
    }
}
