//! `hearth run`: one answer, or a chat on the terminal.

use std::io::{BufRead, Write};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use hearth_sdk::abi_stable::std_types::{RString, RVec};
use hearth_sdk::{ChatMessage, GenerateRequest, Sampling};
use tokio::sync::mpsc;

use crate::lifecycle::KeepAlive;
use crate::router::RouteRequest;
use crate::service::{Completion, Generation, Hearth};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A catalog model id; omit it to let the router choose. With a single argument
    /// that is not a model id, the argument is the prompt.
    pub model: Option<String>,
    /// The prompt; omit it to chat.
    pub prompt: Option<String>,
    /// Force a backend (`llamacpp`, `mlx`, `webgpu`, or any plugin's id).
    #[arg(long)]
    pub backend: Option<String>,
    /// Start from this tier instead of the recommended one.
    #[arg(long)]
    pub tier: Option<u8>,
    /// A LoRA adapter from the catalog, optionally with a scale: NAME[:SCALE].
    #[arg(long = "adapter", value_name = "NAME[:SCALE]")]
    pub adapters: Vec<String>,
    #[arg(long, default_value_t = 512)]
    pub max_tokens: u32,
    /// 0 is greedy.
    #[arg(long)]
    pub temperature: Option<f32>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// A system message put before the conversation.
    #[arg(long)]
    pub system: Option<String>,
    /// Print timings and token counts after each answer.
    #[arg(long)]
    pub verbose: bool,
}

fn parse_adapter(text: &str) -> anyhow::Result<(String, f32)> {
    match text.split_once(':') {
        None => Ok((text.to_string(), 1.0)),
        Some((name, scale)) => {
            let scale: f32 = scale
                .parse()
                .with_context(|| format!("adapter scale `{scale}` is not a number"))?;
            if !(0.0..=4.0).contains(&scale) {
                bail!("adapter scale must be between 0 and 4, got {scale}");
            }
            Ok((name.to_string(), scale))
        }
    }
}

impl RunArgs {
    /// Split the positionals into a model and a prompt.
    fn model_and_prompt(&self, hearth: &Hearth) -> (Option<String>, Option<String>) {
        match (&self.model, &self.prompt) {
            (Some(only), None) if hearth.catalog().model(only).is_none() => {
                (None, Some(only.clone()))
            }
            (model, prompt) => (model.clone(), prompt.clone()),
        }
    }

    fn sampling(&self) -> Sampling {
        let mut sampling = Sampling::default();
        if let Some(temperature) = self.temperature {
            sampling.temperature = temperature;
        }
        sampling.seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|t| t.as_nanos() as u64)
                .unwrap_or(0)
        });
        sampling
    }
}

/// Run one prompt, or chat until end of input.
pub async fn run(hearth: Arc<Hearth>, args: RunArgs) -> anyhow::Result<()> {
    let (model, prompt) = args.model_and_prompt(&hearth);
    let adapters =
        args.adapters.iter().map(|text| parse_adapter(text)).collect::<anyhow::Result<Vec<_>>>()?;
    let route =
        RouteRequest { model, backend: args.backend.clone(), tier: args.tier, device: None };
    let mut history: Vec<ChatMessage> = Vec::new();
    if let Some(system) = &args.system {
        history.push(ChatMessage { role: "system".into(), content: system.as_str().into() });
    }
    let generation = |history: &[ChatMessage]| Generation {
        route: route.clone(),
        request: GenerateRequest {
            messages: RVec::from(history.to_vec()),
            prompt: None.into(),
            sampling: args.sampling(),
            stop: RVec::new(),
            max_tokens: args.max_tokens,
            adapters: RVec::new(),
            ..GenerateRequest::default()
        },
        adapters: adapters.clone(),
        keep_alive: KeepAlive::Default,
    };
    if let Some(prompt) = prompt {
        history.push(ChatMessage { role: "user".into(), content: prompt.into() });
        answer(&hearth, generation(&history), args.verbose, true).await?;
        return Ok(());
    }
    eprintln!("Chatting; end with /bye or Ctrl-D.");
    let stdin = std::io::stdin();
    let mut announced = false;
    loop {
        eprint!(">>> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            eprintln!();
            return Ok(());
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if ends_chat(line) {
            return Ok(());
        }
        history.push(ChatMessage { role: "user".into(), content: line.into() });
        let (text, _) = answer(&hearth, generation(&history), args.verbose, !announced).await?;
        announced = true;
        history.push(ChatMessage { role: "assistant".into(), content: RString::from(text) });
    }
}

/// The chat commands that end a chat, as Ollama's (`/bye`) and other REPLs' are.
fn ends_chat(line: &str) -> bool {
    matches!(line, "/bye" | "/exit" | "/quit")
}

/// Generate one answer, streaming it to stdout.
async fn answer(
    hearth: &Hearth,
    generation: Generation,
    verbose: bool,
    announce: bool,
) -> anyhow::Result<(String, Completion)> {
    let prepared = hearth.prepare(generation).await?;
    if announce {
        eprintln!(
            "[hearth] {} on {} ({})",
            prepared.model_id(),
            prepared.backend(),
            prepared.memory().processor()
        );
    }
    let (tokens, mut pieces) = mpsc::unbounded_channel();
    let running = tokio::spawn(prepared.run(tokens));
    let mut text = String::new();
    let mut stdout = std::io::stdout();
    while let Some(piece) = pieces.recv().await {
        stdout.write_all(piece.text.as_bytes())?;
        stdout.flush()?;
        text.push_str(&piece.text);
    }
    let completion = running.await.context("the generation task failed")??;
    println!();
    if announce {
        eprintln!("[hearth] why: {}", completion.reason);
        for fallback in &completion.fallbacks {
            eprintln!("[hearth] fell back past: {fallback}");
        }
    }
    if verbose {
        let decode_rate = f64::from(completion.completion_tokens.saturating_sub(1))
            / (completion.decode_ms / 1e3);
        eprintln!(
            "[hearth] {} prompt tokens in {:.0} ms, {} tokens generated at {:.1} tok/s, first token after {:.0} ms, finish: {}",
            completion.prompt_tokens,
            completion.prompt_ms,
            completion.completion_tokens,
            decode_rate,
            completion.time_to_first_token_ms.unwrap_or(f64::NAN),
            completion.finish_reason
        );
    }
    Ok((text, completion))
}
