//! Log-probabilities in OpenAI's two shapes: chat's `logprobs.content` (a token, its
//! log-probability, its bytes and its alternatives each) and legacy completions'
//! parallel lists (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`). Chat's
//! entries also carry the token's `id`, as llama-server's do, which is what
//! `logit_bias` takes.

use hearth_sdk::{TokenLogprob, TokenLogprobs};
use serde_json::{json, Map, Value};

/// A token's text as OpenAI's `token` field carries it: its bytes as UTF-8, a byte
/// that is part of a character split across tokens as U+FFFD (`bytes` has them all).
fn text(token: &TokenLogprob) -> String {
    String::from_utf8_lossy(&token.bytes).into_owned()
}

fn chat_entry(token: &TokenLogprob) -> Value {
    json!({
        "id": token.token,
        "token": text(token),
        "logprob": token.logprob,
        "bytes": token.bytes.as_slice(),
    })
}

/// Chat's `logprobs` of a choice or a chunk.
pub fn chat(entries: &[TokenLogprobs]) -> Value {
    let content: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let mut value = chat_entry(&entry.chosen);
            value["top_logprobs"] = entry.top.iter().map(chat_entry).collect();
            value
        })
        .collect();
    json!({ "content": content, "refusal": null })
}

/// Legacy completions' `logprobs`; `offset` is the characters of the answer before
/// these tokens, so a stream's chunks count on from each other.
pub fn text_completion(entries: &[TokenLogprobs], offset: &mut usize) -> Value {
    let mut tokens = Vec::new();
    let mut token_logprobs = Vec::new();
    let mut top_logprobs = Vec::new();
    let mut text_offset = Vec::new();
    for entry in entries {
        let token = text(&entry.chosen);
        text_offset.push(*offset);
        *offset += token.chars().count();
        tokens.push(token);
        token_logprobs.push(entry.chosen.logprob);
        let top: Map<String, Value> =
            entry.top.iter().map(|top| (text(top), json!(top.logprob))).collect();
        top_logprobs.push(top);
    }
    json!({
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs,
        "text_offset": text_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(token: u32, bytes: &[u8], logprob: f32) -> TokenLogprob {
        TokenLogprob { token, bytes: bytes.to_vec().into(), logprob }
    }

    fn entries() -> Vec<TokenLogprobs> {
        vec![
            TokenLogprobs {
                chosen: token(5, b"Hi", -0.25),
                top: vec![token(5, b"Hi", -0.25), token(9, b"Hello", -1.5)].into(),
            },
            // The first half of "é" (0xC3 0xA9).
            TokenLogprobs { chosen: token(7, &[0xC3], -0.5), top: Default::default() },
        ]
    }

    #[test]
    fn chat_logprobs_carry_each_token_with_its_bytes_and_alternatives() {
        let value = chat(&entries());
        assert_eq!(value["content"][0]["token"], "Hi");
        assert_eq!(value["content"][0]["id"], 5);
        assert_eq!(value["content"][0]["logprob"], -0.25);
        assert_eq!(value["content"][0]["bytes"], json!([72, 105]));
        assert_eq!(value["content"][0]["top_logprobs"][1]["token"], "Hello");
        assert_eq!(value["content"][1]["token"], "\u{FFFD}");
        assert_eq!(value["content"][1]["bytes"], json!([0xC3]));
        assert_eq!(value["content"][1]["top_logprobs"], json!([]));
    }

    #[test]
    fn completion_logprobs_are_parallel_lists_whose_offsets_count_on_across_chunks() {
        let mut offset = 3;
        let value = text_completion(&entries(), &mut offset);
        assert_eq!(value["tokens"], json!(["Hi", "\u{FFFD}"]));
        assert_eq!(value["token_logprobs"], json!([-0.25, -0.5]));
        assert_eq!(value["top_logprobs"][0]["Hello"], -1.5);
        assert_eq!(value["text_offset"], json!([3, 5]));
        assert_eq!(offset, 6);
    }
}
