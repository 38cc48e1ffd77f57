//! Chat templates: the Jinja template a GGUF file carries in `tokenizer.chat_template`,
//! rendered with minijinja plus its Python-compatibility methods (`.strip()`,
//! `.startswith()`, …) that Hugging Face templates call.

use minijinja::{context, Environment, Error as JinjaError, ErrorKind};

use crate::types::ChatMessage;

/// Why a template could not be compiled or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("chat template does not compile: {0}")]
    Compile(String),
    #[error("chat template failed to render: {0}")]
    Render(String),
}

/// A compiled chat template with the model's BOS and EOS texts.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

/// `raise_exception(message)`, which templates call to refuse a conversation.
fn raise_exception(message: String) -> Result<String, JinjaError> {
    Err(JinjaError::new(ErrorKind::InvalidOperation, message))
}

impl ChatTemplate {
    /// Compile `source`; `bos_token` and `eos_token` are the texts the template sees.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, ChatError> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        // Hugging Face renders with trim_blocks and lstrip_blocks on.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_template_owned("chat", source.to_string())
            .map_err(|error| ChatError::Compile(error.to_string()))?;
        Ok(Self { env, bos_token: bos_token.to_string(), eos_token: eos_token.to_string() })
    }

    /// Render a conversation; `add_generation_prompt` appends the assistant's header.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let messages: Vec<_> = messages
            .iter()
            .map(|message| context! { role => message.role.as_str(), content => message.content.as_str() })
            .collect();
        let template =
            self.env.get_template("chat").map_err(|error| ChatError::Render(error.to_string()))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
            })
            .map_err(|error| ChatError::Render(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(role: &str, content: &str) -> ChatMessage {
        ChatMessage { role: role.into(), content: content.into() }
    }

    #[test]
    fn python_string_methods_and_special_tokens_are_available() {
        let template = ChatTemplate::new(
            "{{ bos_token }}{% for m in messages %}[{{ m.role.upper() }}]{{ m.content.strip() }}{% endfor %}{% if add_generation_prompt %}>{% endif %}{{ eos_token }}",
            "<s>",
            "</s>",
        )
        .unwrap();
        let text = template.render(&[message("user", "  hi  ")], true).unwrap();
        assert_eq!(text, "<s>[USER]hi></s>");
    }

    #[test]
    fn raise_exception_in_a_template_is_a_render_error() {
        let template =
            ChatTemplate::new("{{ raise_exception('no system role') }}", "", "").unwrap();
        let error = template.render(&[], false).unwrap_err();
        assert!(error.to_string().contains("no system role"));
    }

    #[test]
    fn a_template_with_a_syntax_error_does_not_compile() {
        assert!(matches!(ChatTemplate::new("{% for %}", "", ""), Err(ChatError::Compile(_))));
    }
}
