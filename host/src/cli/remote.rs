//! Verbs that talk to a running `hearth serve`: `ps` and `stop`.

use anyhow::{bail, Context};
use serde_json::Value;

async fn call(request: reqwest::RequestBuilder, server: &str) -> anyhow::Result<Value> {
    let response = request.send().await.with_context(|| {
        format!("no hearth server answers at {server}; start one with `hearth serve`")
    })?;
    let status = response.status();
    let body: Value = response.json().await.context("the server's answer is not JSON")?;
    if !status.is_success() {
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        bail!("the server refused: {message} ({status})");
    }
    Ok(body)
}

/// `hearth ps`
pub async fn ps(server: &str, json: bool) -> anyhow::Result<()> {
    let body = call(reqwest::Client::new().get(format!("{server}/api/ps")), server).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    let models = body["models"].as_array().cloned().unwrap_or_default();
    if models.is_empty() {
        println!("no models loaded");
        return Ok(());
    }
    println!("{:<24} {:<10} {:<9} {:>5} {:>10}", "MODEL", "BACKEND", "STATE", "REFS", "MEMORY");
    // Ollama's fields (`name`, `size`) and hearth's own beside them (`key`, `state`, `refs`).
    for model in models {
        println!(
            "{:<24} {:<10} {:<9} {:>5} {:>7} MB",
            model["name"].as_str().unwrap_or("?"),
            model["key"]["backend"].as_str().unwrap_or("?"),
            model["state"].as_str().unwrap_or("?"),
            model["refs"].as_u64().unwrap_or(0),
            model["size"].as_u64().unwrap_or(0) / 1_000_000
        );
    }
    Ok(())
}

/// `hearth stop MODEL`
pub async fn stop(server: &str, model: &str) -> anyhow::Result<()> {
    let request = reqwest::Client::new()
        .post(format!("{server}/api/unload"))
        .json(&serde_json::json!({ "model": model }));
    call(request, server).await?;
    println!("unloaded {model}");
    Ok(())
}
