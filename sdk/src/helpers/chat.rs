//! Chat templates: the Jinja template a GGUF file carries in `tokenizer.chat_template`,
//! rendered with minijinja plus its Python-compatibility methods (`.strip()`,
//! `.startswith()`, …) that Hugging Face templates call. Every engine renders chats
//! here, with the same fallback for files without a template, so one request is the
//! same prompt on every backend.

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

/// Turn formats for files that carry no template, by the start of their architecture's
/// name: the ones llama.cpp applies to such files.
const FAMILY_TEMPLATES: &[(&str, &str)] = &[("gemma", include_str!("templates/gemma.jinja"))];

/// ChatML: what llama-server uses for a file without a template whose family has no
/// turn format of its own.
const CHATML: &str = include_str!("templates/chatml.jinja");

/// The template a model renders chats with: the file's own (`stored`), else its
/// family's turn format, else ChatML.
pub fn template_source<'a>(stored: Option<&'a str>, architecture: &str) -> &'a str {
    stored.unwrap_or_else(|| {
        FAMILY_TEMPLATES
            .iter()
            .find(|(family, _)| architecture.starts_with(family))
            .map_or(CHATML, |(_, source)| source)
    })
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
    fn a_file_without_a_template_gets_its_family_turn_format_else_chatml() {
        let chat = [message("system", "Be brief."), message("user", "Hi")];
        let render = |architecture| {
            let source = template_source(None, architecture);
            ChatTemplate::new(source, "<bos>", "<eos>").unwrap().render(&chat, true).unwrap()
        };
        assert!(render("gemma3").starts_with("<start_of_turn>user\nBe brief.\n\nHi"));
        assert_eq!(
            render("qwen2"),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(template_source(Some("{{ x }}"), "gemma3"), "{{ x }}");
    }

    #[test]
    fn the_gemma_turn_format_renders_turns_as_llama_cpp_does() {
        let template =
            ChatTemplate::new(template_source(None, "gemma3"), "<bos>", "<eos>").unwrap();
        let text = template
            .render(
                &[
                    message("system", "Be brief."),
                    message("user", " Hi "),
                    message("assistant", "Hello."),
                    message("user", "Capital of France?"),
                ],
                true,
            )
            .unwrap();
        assert_eq!(
            text,
            "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n\
             <start_of_turn>user\nCapital of France?<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn a_template_with_a_syntax_error_does_not_compile() {
        assert!(matches!(ChatTemplate::new("{% for %}", "", ""), Err(ChatError::Compile(_))));
    }
}
