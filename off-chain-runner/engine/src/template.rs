//! Chat templates: the Jinja template a model ships (GGUF `tokenizer.chat_template`, or
//! `chat_template` in a Hugging Face `tokenizer_config.json`), rendered with minijinja as
//! transformers renders it.

use minijinja::{context, Environment, Error as JinjaError, ErrorKind};

use crate::api::ChatMessage;
use crate::{Error, Result};

/// ChatML, for models that ship no template.
pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

impl ChatTemplate {
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        // Templates call raise_exception on unsupported conversations (a role they refuse).
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, JinjaError> {
                Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned("chat", source.to_owned())
            .map_err(|e| Error::Format(format!("chat template: {e}")))?;
        Ok(ChatTemplate {
            env,
            bos: bos.into(),
            eos: eos.into(),
        })
    }

    /// The prompt for `messages`, ending with the assistant's turn opened.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String> {
        if messages.is_empty() {
            return Err(Error::Input("a chat needs at least one message".into()));
        }
        let template = self.env.get_template("chat").expect("added in new");
        template
            .render(
                context! { messages => messages, add_generation_prompt => true,
                bos_token => &self.bos, eos_token => &self.eos },
            )
            .map_err(|e| Error::Input(format!("chat template refused the messages: {e}")))
    }
}
