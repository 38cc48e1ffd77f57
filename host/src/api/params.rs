//! Request fields shared by the completion endpoints, and their validation.

use std::time::Duration;

use hearth_sdk::abi_stable::std_types::{RString, RVec};
use hearth_sdk::{LogitBias, Sampling, DEFAULT_MAX_TOKENS, MAX_TOP_LOGPROBS};
use serde::Deserialize;

use super::structured::{one_shape, OutputShape, ResponseFormat};
use super::tools::ToolUse;
use super::ApiError;
use crate::lifecycle::KeepAlive;
use crate::router::RouteRequest;

/// The most tokens one request may ask for; larger values are a client error.
pub const MAX_TOKENS_LIMIT: u32 = 32_768;

/// `stop` may be one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StopField {
    One(String),
    Many(Vec<String>),
}

/// `keep_alive` as Ollama takes it: seconds, or a duration string ("5m", "1h"), or a
/// negative number for "forever".
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum KeepAliveField {
    Seconds(f64),
    Text(String),
}

/// `seed` as any 64-bit integer: hearth's own seeds span all of `u64` (a forwarding
/// plugin sends them on), and some clients send negative ones.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SeedField {
    Unsigned(u64),
    Signed(i64),
}

/// A count as the client wrote it: `5`, or `5.0` (JavaScript has only floats, and some
/// clients write every number with a point). [`WholeNumber::whole`] refuses `5.5`,
/// naming the field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WholeNumber(pub f64);

impl WholeNumber {
    pub fn whole(self, name: &str) -> Result<i64, ApiError> {
        let WholeNumber(value) = self;
        if value.fract() == 0.0 && value.abs() < 9.0e15 {
            Ok(value as i64)
        } else {
            Err(ApiError::bad_request(format!("`{name}` must be a whole number, got {value}")))
        }
    }
}

impl<'de> Deserialize<'de> for WholeNumber {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        f64::deserialize(deserializer).map(WholeNumber)
    }
}

/// OpenAI request fields hearth does not honour yet. Each is refused with a 400 naming
/// it rather than ignored, unless its value asks for nothing (null, false, 0, an empty
/// list or object: what some clients send for every field they know).
const NOT_YET_SUPPORTED: &[&str] = &[
    "functions",
    "function_call",
    "audio",
    "modalities",
    "prediction",
    "reasoning_effort",
    "verbosity",
    "web_search_options",
    // /v1/completions
    "suffix",
    "echo",
    "best_of",
];

/// OpenAI request fields that change nothing about the answer (they label the request
/// for the caller's own bookkeeping), accepted and not used.
const BOOKKEEPING: &[&str] =
    &["user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key"];

/// Whether a field's value asks for nothing.
pub fn asks_for_nothing(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::Number(number) => number.as_f64() == Some(0.0),
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        Value::Bool(true) | Value::String(_) => false,
    }
}

/// A LoRA adapter by catalog name, with its scale.
#[derive(Debug, Deserialize)]
pub struct AdapterField {
    pub name: String,
    #[serde(default = "full_scale")]
    pub scale: f32,
}

fn full_scale() -> f32 {
    1.0
}

/// Fields every completion request shares (OpenAI's, plus hearth's extensions).
#[derive(Debug, Default, Deserialize)]
pub struct CommonParams {
    pub model: Option<String>,
    pub max_tokens: Option<WholeNumber>,
    pub max_completion_tokens: Option<WholeNumber>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<WholeNumber>,
    pub min_p: Option<f64>,
    pub repeat_penalty: Option<f64>,
    pub repeat_last_n: Option<WholeNumber>,
    pub seed: Option<SeedField>,
    pub stop: Option<StopField>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    /// Token id (as a string, as JSON keys are) to a bias from -100 to 100.
    pub logit_bias: Option<serde_json::Map<String, serde_json::Value>>,
    pub logprobs: Option<LogprobsField>,
    pub top_logprobs: Option<WholeNumber>,
    pub n: Option<WholeNumber>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub keep_alive: Option<KeepAliveField>,
    pub response_format: Option<ResponseFormat>,
    pub tools: Option<serde_json::Value>,
    pub tool_choice: Option<serde_json::Value>,
    pub parallel_tool_calls: Option<bool>,
    /// llama-server's: a JSON schema the output must follow.
    pub json_schema: Option<serde_json::Value>,
    /// A grammar in llguidance's Lark dialect the output must follow.
    pub grammar: Option<String>,
    #[serde(default)]
    pub adapters: Vec<AdapterField>,
    pub backend: Option<String>,
    pub tier: Option<u8>,
    /// Every other field, checked by [`CommonParams::check_fields`].
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// `logprobs`: a flag on chat completions (with `top_logprobs` for alternatives), a
/// count of alternatives on legacy completions.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum LogprobsField {
    Flag(bool),
    Count(WholeNumber),
}

/// The most entries `logit_bias` may hold.
const MAX_LOGIT_BIAS: usize = 1024;

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

fn finite_in(name: &str, value: f64, low: f64, high: f64) -> Result<f32, ApiError> {
    if value.is_finite() && value >= low && value <= high {
        Ok(value as f32)
    } else {
        Err(ApiError::bad_request(format!(
            "`{name}` must be between {low} and {high}, got {value}"
        )))
    }
}

fn penalty(name: &str, value: Option<f64>) -> Result<f32, ApiError> {
    value.map_or(Ok(0.0), |value| finite_in(name, value, -2.0, 2.0))
}

impl CommonParams {
    /// The tools the model may call, and how; none when it may call none.
    pub fn tool_use(&self) -> Result<Option<ToolUse>, ApiError> {
        ToolUse::from_openai(
            self.tools.as_ref(),
            self.tool_choice.as_ref(),
            self.parallel_tool_calls,
        )
    }

    /// The grammar the request's output must follow, from whichever field asked for
    /// one; empty for free text.
    pub fn grammar(&self) -> Result<RString, ApiError> {
        let response_format =
            self.response_format.as_ref().map(OutputShape::from_response_format).transpose()?;
        let json_schema = self
            .json_schema
            .as_ref()
            .map(|schema| OutputShape::schema(schema, "json_schema"))
            .transpose()?;
        let grammar = match self.grammar.as_deref() {
            Some("") | None => None,
            Some(grammar) => Some(OutputShape::Lark(grammar.to_string())),
        };
        let shape = one_shape([
            ("response_format", response_format.flatten()),
            ("json_schema", json_schema.flatten()),
            ("grammar", grammar),
        ])?;
        Ok(shape.map(|shape| shape.grammar()).unwrap_or_default().into())
    }

    /// The model the client named; "auto", "default" or nothing lets the router choose.
    pub fn route(&self) -> RouteRequest {
        let model = self
            .model
            .clone()
            .filter(|name| !name.is_empty() && name != "auto" && name != "default");
        RouteRequest { model, backend: self.backend.clone(), tier: self.tier, device: None }
    }

    pub fn max_tokens(&self) -> Result<u32, ApiError> {
        let asked = self.max_completion_tokens.or(self.max_tokens);
        match asked.map(|count| count.whole("max_tokens")).transpose()? {
            None => Ok(DEFAULT_MAX_TOKENS),
            Some(value) if (1..=i64::from(MAX_TOKENS_LIMIT)).contains(&value) => Ok(value as u32),
            Some(value) => Err(ApiError::bad_request(format!(
                "`max_tokens` must be between 1 and {MAX_TOKENS_LIMIT}, got {value}"
            ))),
        }
    }

    pub fn sampling(&self) -> Result<Sampling, ApiError> {
        let mut sampling = Sampling::default();
        if let Some(value) = self.temperature {
            sampling.temperature = finite_in("temperature", value, 0.0, 2.0)?;
        }
        if let Some(value) = self.top_p {
            sampling.top_p = finite_in("top_p", value, 0.0, 1.0)?;
        }
        if let Some(value) = self.min_p {
            sampling.min_p = finite_in("min_p", value, 0.0, 1.0)?;
        }
        if let Some(value) = self.repeat_penalty {
            sampling.repeat_penalty = finite_in("repeat_penalty", value, 0.0, 10.0)?;
        }
        if let Some(value) =
            self.repeat_last_n.map(|count| count.whole("repeat_last_n")).transpose()?
        {
            sampling.repeat_last_n = u32::try_from(value).map_err(|_| {
                ApiError::bad_request(format!("`repeat_last_n` must be 0 or more, got {value}"))
            })?;
        }
        if let Some(value) = self.top_k.map(|count| count.whole("top_k")).transpose()? {
            sampling.top_k = u32::try_from(value).map_err(|_| {
                ApiError::bad_request(format!("`top_k` must be 0 or more, got {value}"))
            })?;
        }
        sampling.seed = match self.seed {
            Some(SeedField::Unsigned(seed)) => seed,
            // Negative seeds are accepted as other clients accept them: the same bits.
            Some(SeedField::Signed(seed)) => seed as u64,
            None => rand_seed(),
        };
        Ok(sampling)
    }

    pub fn stop(&self) -> Result<RVec<RString>, ApiError> {
        let stops = match &self.stop {
            None => Vec::new(),
            Some(StopField::One(stop)) => vec![stop.clone()],
            Some(StopField::Many(stops)) => stops.clone(),
        };
        if stops.len() > 16 || stops.iter().any(|stop| stop.is_empty() || stop.len() > 256) {
            return Err(ApiError::bad_request(
                "`stop` takes at most 16 non-empty strings of at most 256 bytes",
            ));
        }
        Ok(stops.into_iter().map(RString::from).collect())
    }

    /// OpenAI's presence penalty, from -2 to 2; 0 when not given.
    pub fn presence_penalty(&self) -> Result<f32, ApiError> {
        penalty("presence_penalty", self.presence_penalty)
    }

    /// OpenAI's frequency penalty, from -2 to 2; 0 when not given.
    pub fn frequency_penalty(&self) -> Result<f32, ApiError> {
        penalty("frequency_penalty", self.frequency_penalty)
    }

    pub fn logit_bias(&self) -> Result<RVec<LogitBias>, ApiError> {
        let Some(entries) = &self.logit_bias else { return Ok(RVec::new()) };
        if entries.len() > MAX_LOGIT_BIAS {
            return Err(ApiError::bad_request(format!(
                "`logit_bias` takes at most {MAX_LOGIT_BIAS} tokens, got {}",
                entries.len()
            )));
        }
        entries
            .iter()
            .map(|(token, bias)| {
                let token = token.trim().parse::<u32>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "`logit_bias` keys are token ids of the model's vocabulary, got `{token}`"
                    ))
                })?;
                let bias = bias.as_f64().ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "`logit_bias` values are numbers from -100 to 100, got {bias} for token {token}"
                    ))
                })?;
                Ok(LogitBias { token, bias: finite_in("logit_bias", bias, -100.0, 100.0)? })
            })
            .collect()
    }

    /// How many alternatives to report with each token's log-probability; none when
    /// the request does not ask for log-probabilities.
    pub fn logprobs(&self) -> Result<Option<u32>, ApiError> {
        let count = |value: WholeNumber, name: &str| {
            let value = value.whole(name)?;
            u32::try_from(value).ok().filter(|&n| n <= MAX_TOP_LOGPROBS).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`{name}` must be between 0 and {MAX_TOP_LOGPROBS}, got {value}"
                ))
            })
        };
        let top = self.top_logprobs.map(|top| count(top, "top_logprobs")).transpose()?;
        match &self.logprobs {
            Some(LogprobsField::Flag(true)) => Ok(Some(top.unwrap_or(0))),
            Some(LogprobsField::Count(n)) => count(*n, "logprobs").map(Some),
            Some(LogprobsField::Flag(false)) | None if top.unwrap_or(0) > 0 => {
                Err(ApiError::bad_request("`top_logprobs` needs `logprobs: true`"))
            }
            Some(LogprobsField::Flag(false)) | None => Ok(None),
        }
    }

    pub fn keep_alive(&self) -> Result<KeepAlive, ApiError> {
        let seconds = match &self.keep_alive {
            None => return Ok(KeepAlive::Default),
            Some(KeepAliveField::Seconds(seconds)) => *seconds,
            Some(KeepAliveField::Text(text)) => parse_keep_alive(text)?,
        };
        if !seconds.is_finite() {
            return Err(ApiError::bad_request("`keep_alive` must be a finite number"));
        }
        if seconds < 0.0 {
            return Ok(KeepAlive::Forever);
        }
        Ok(KeepAlive::For(Duration::from_secs_f64(seconds.min(365.0 * 86_400.0))))
    }

    pub fn adapters(&self) -> Result<Vec<(String, f32)>, ApiError> {
        self.adapters
            .iter()
            .map(|adapter| {
                Ok((
                    adapter.name.clone(),
                    finite_in("adapters[].scale", f64::from(adapter.scale), 0.0, 4.0)?,
                ))
            })
            .collect()
    }

    pub fn check_n(&self) -> Result<(), ApiError> {
        match self.n.map(|count| count.whole("n")).transpose()? {
            None | Some(1) => Ok(()),
            Some(n) => Err(ApiError::bad_request(format!("only n = 1 is supported, got {n}"))),
        }
    }

    /// Refuse the fields hearth does not honour, naming the first, rather than answer
    /// as if they had been: a request for tools or a JSON schema must not come back
    /// as plain text with a 200.
    pub fn check_fields(&self) -> Result<(), ApiError> {
        refuse_fields(&self.other, NOT_YET_SUPPORTED, BOOKKEEPING, "")
    }
}

/// Refuse every field of `other` that is not in `unused` (fields that change nothing,
/// accepted as they are): one in `not_yet_supported` with a value that asks for
/// something is "not supported yet", any other is unknown. Names are written with
/// `prefix` (e.g. `options.`), so the message names the field as the client sent it.
pub fn refuse_fields(
    other: &serde_json::Map<String, serde_json::Value>,
    not_yet_supported: &[&str],
    unused: &[&str],
    prefix: &str,
) -> Result<(), ApiError> {
    for (name, value) in other {
        if unused.contains(&name.as_str()) {
            continue;
        }
        if not_yet_supported.contains(&name.as_str()) {
            if asks_for_nothing(value) {
                continue;
            }
            return Err(ApiError::bad_request(format!(
                "`{prefix}{name}` is not supported by hearth yet; send the request without it"
            )));
        }
        return Err(ApiError::bad_request(format!("unknown field `{prefix}{name}`")));
    }
    Ok(())
}

/// "30s", "5m", "1h30m", "-1m", "-1" or a bare number of seconds: Go's durations, as
/// Ollama reads them.
fn parse_keep_alive(text: &str) -> Result<f64, ApiError> {
    let text = text.trim();
    let invalid = || {
        ApiError::bad_request(format!(
            "`keep_alive` must be seconds or a duration like \"5m\", got {text:?}"
        ))
    };
    let (sign, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, text.strip_prefix('+').unwrap_or(text)),
    };
    if !rest.contains(|c: char| c.is_alphabetic()) {
        return rest.trim().parse::<f64>().map(|seconds| sign * seconds).map_err(|_| invalid());
    }
    let mut seconds = 0.0;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| c.is_alphabetic()).ok_or_else(invalid)?;
        let unit_end = rest[number_end..]
            .find(|c: char| !c.is_alphabetic())
            .map_or(rest.len(), |end| number_end + end);
        let value: f64 = rest[..number_end].parse().map_err(|_| invalid())?;
        let scale = match &rest[number_end..unit_end] {
            "ns" => 1e-9,
            "us" | "\u{b5}s" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        seconds += value * scale;
        rest = &rest[unit_end..];
    }
    Ok(sign * seconds)
}

/// A seed for requests that gave none, so unseeded requests differ.
fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_accepts_seconds_durations_and_negative_for_forever() {
        let with = |field| {
            CommonParams { keep_alive: Some(field), ..CommonParams::default() }
                .keep_alive()
                .unwrap()
        };
        assert_eq!(with(KeepAliveField::Seconds(0.0)), KeepAlive::For(Duration::ZERO));
        assert_eq!(
            with(KeepAliveField::Text("5m".into())),
            KeepAlive::For(Duration::from_secs(300))
        );
        assert_eq!(with(KeepAliveField::Text("-1".into())), KeepAlive::Forever);
        assert_eq!(with(KeepAliveField::Text("-5m".into())), KeepAlive::Forever);
        assert_eq!(with(KeepAliveField::Seconds(-1.0)), KeepAlive::Forever);
        assert_eq!(
            with(KeepAliveField::Text("1h30m".into())),
            KeepAlive::For(Duration::from_secs(5400))
        );
        assert_eq!(
            with(KeepAliveField::Text("1500ms".into())),
            KeepAlive::For(Duration::from_millis(1500))
        );
        assert!(CommonParams {
            keep_alive: Some(KeepAliveField::Text("soon".into())),
            ..CommonParams::default()
        }
        .keep_alive()
        .is_err());
    }

    #[test]
    fn out_of_range_numbers_are_rejected_with_the_field_name() {
        let params = CommonParams { temperature: Some(f64::NAN), ..CommonParams::default() };
        assert!(params.sampling().unwrap_err().message.contains("temperature"));
        let params =
            CommonParams { max_tokens: Some(WholeNumber(-3.0)), ..CommonParams::default() };
        assert!(params.max_tokens().unwrap_err().message.contains("max_tokens"));
        let params = CommonParams { max_tokens: Some(WholeNumber(1e7)), ..CommonParams::default() };
        assert!(params.max_tokens().is_err());
        let params = CommonParams { top_k: Some(WholeNumber(-1.0)), ..CommonParams::default() };
        assert!(params.sampling().is_err());
        let params = CommonParams { max_tokens: Some(WholeNumber(5.0)), ..CommonParams::default() };
        assert_eq!(params.max_tokens().unwrap(), 5);
        let params = CommonParams { max_tokens: Some(WholeNumber(5.5)), ..CommonParams::default() };
        assert!(params.max_tokens().unwrap_err().message.contains("whole number"));
    }

    fn parsed(body: serde_json::Value) -> CommonParams {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn logprobs_are_a_flag_with_a_count_of_alternatives_or_a_legacy_count() {
        use serde_json::json;
        assert_eq!(parsed(json!({})).logprobs().unwrap(), None);
        assert_eq!(parsed(json!({ "logprobs": false })).logprobs().unwrap(), None);
        assert_eq!(parsed(json!({ "logprobs": true })).logprobs().unwrap(), Some(0));
        let chat = parsed(json!({ "logprobs": true, "top_logprobs": 3 }));
        assert_eq!(chat.logprobs().unwrap(), Some(3));
        assert_eq!(parsed(json!({ "logprobs": 5 })).logprobs().unwrap(), Some(5));
        let alone = parsed(json!({ "top_logprobs": 2 })).logprobs().unwrap_err();
        assert!(
            alone.message.contains("`top_logprobs` needs `logprobs: true`"),
            "{}",
            alone.message
        );
        let many = parsed(json!({ "logprobs": true, "top_logprobs": 21 })).logprobs().unwrap_err();
        assert!(many.message.contains("between 0 and 20"), "{}", many.message);
    }

    #[test]
    fn a_logit_bias_needs_token_ids_for_keys_and_biases_within_a_hundred() {
        use serde_json::json;
        let bias = parsed(json!({ "logit_bias": { "42": -100, "7": 2.5 } })).logit_bias().unwrap();
        let mut bias: Vec<(u32, f32)> = bias.iter().map(|b| (b.token, b.bias)).collect();
        bias.sort_by_key(|&(token, _)| token);
        assert_eq!(bias, [(7, 2.5), (42, -100.0)]);
        let word = parsed(json!({ "logit_bias": { "hello": 1 } })).logit_bias().unwrap_err();
        assert!(word.message.contains("token ids") && word.message.contains("hello"));
        let big = parsed(json!({ "logit_bias": { "1": 101 } })).logit_bias().unwrap_err();
        assert!(big.message.contains("`logit_bias` must be between -100 and 100"));
        let text = parsed(json!({ "logit_bias": { "1": "up" } })).logit_bias().unwrap_err();
        assert!(text.message.contains("numbers"), "{}", text.message);
    }

    #[test]
    fn presence_and_frequency_penalties_run_from_minus_two_to_two() {
        use serde_json::json;
        let params = parsed(json!({ "presence_penalty": 1.5, "frequency_penalty": -2 }));
        assert_eq!(params.presence_penalty().unwrap(), 1.5);
        assert_eq!(params.frequency_penalty().unwrap(), -2.0);
        let params = parsed(json!({ "presence_penalty": 2.5 }));
        assert!(params.presence_penalty().unwrap_err().message.contains("presence_penalty"));
        assert_eq!(parsed(json!({})).frequency_penalty().unwrap(), 0.0);
    }
}
