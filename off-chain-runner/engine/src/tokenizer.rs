//! Text ⇄ token ids through the `tokenizers` crate: a Hugging Face `tokenizer.json` as is
//! (its fixed padding switched off), or one assembled from a GGUF file's vocabulary and
//! merges with the pre-tokenizer its `tokenizer.ggml.pre` names.

use serde_json::{json, Value};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

use crate::files::Source;
use crate::gguf::{self, Gguf};
use crate::{Error, Result};

fn err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

/// A tokenizer with the two operations a model needs.
pub struct TextCodec {
    inner: Tokenizer,
}

impl TextCodec {
    /// The model's `tokenizer.json`, whole texts in: padding and truncation are turned off
    /// (a batch of one needs no padding, and padding tokens would enter mean pooling; a
    /// caller decides what a text too long is, see [`TextCodec::truncating`]).
    pub fn from_source(source: &Source<'_>) -> Result<TextCodec> {
        const FILE: &str = "tokenizer.json";
        let mut inner = Tokenizer::from_bytes(&*source.read(FILE)?)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", source.describe_file(FILE))))?;
        inner.with_padding(None::<PaddingParams>);
        inner.with_truncation(None).map_err(err)?;
        Ok(TextCodec { inner })
    }

    /// The same tokenizer truncating texts to `max_len` tokens, its own framing included
    /// (sentence-transformers' `max_seq_length`).
    pub fn truncating(&self, max_len: usize) -> Result<TextCodec> {
        let mut inner = self.inner.clone();
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..TruncationParams::default()
            }))
            .map_err(err)?;
        Ok(TextCodec { inner })
    }

    pub fn from_json(json: &str) -> Result<TextCodec> {
        let inner: Tokenizer = json.parse().map_err(err)?;
        Ok(TextCodec { inner })
    }

    /// Token ids of `text`; `special` adds the tokenizer's own framing (BERT's [CLS]/[SEP]).
    /// Special tokens written in the text (a chat template's markers) are recognized.
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode(text, special)
            .map_err(err)?
            .get_ids()
            .to_vec())
    }

    /// Text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(err)
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The text `id` adds after the tokens already given to `stream`, or `None` while it
    /// ends inside a character (bytes held until a later token completes it). Costs a
    /// decode of the last few tokens, not of the whole generation: `tokenizers`'
    /// `DecodeStream` algorithm, with its state kept by the caller (a `DecodeStream`
    /// borrows the tokenizer, which a sequence outliving the call cannot hold).
    pub fn decode_next(&self, stream: &mut DecodeState, id: u32) -> Result<Option<String>> {
        tokenizers::tokenizer::step_decode_stream(
            &self.inner,
            vec![id],
            true,
            &mut stream.ids,
            &mut stream.prefix,
            &mut stream.prefix_index,
        )
        .map_err(err)
    }

    /// What `stream` holds back, decoded as is (a cut character shows as U+FFFD): the end
    /// of a generation that stopped mid-character.
    pub fn decode_rest(&self, stream: &DecodeState) -> Result<String> {
        let all = self.decode(&stream.ids)?;
        Ok(all
            .get(stream.prefix.len()..)
            .unwrap_or_default()
            .to_owned())
    }
}

/// Where an incremental decode stands ([`TextCodec::decode_next`]): the last tokens, the
/// text they decode to that was already given out, and where that text's tokens end.
#[derive(Clone, Debug, Default)]
pub struct DecodeState {
    ids: Vec<u32>,
    prefix: String,
    prefix_index: usize,
}

/// GGUF token types (llama.cpp's `llama_token_type`): 3 control, 4 user-defined.
const CONTROL: u64 = 3;
const USER_DEFINED: u64 = 4;

/// Builds the tokenizer a GGUF file describes. Only byte-level BPE (`tokenizer.ggml.model`
/// "gpt2") is supported, with the pre-tokenizers llama.cpp calls "default"/"gpt2" and
/// "smollm"; anything else is refused by name rather than tokenized wrongly.
pub fn from_gguf(file: &Gguf) -> Result<TextCodec> {
    let model = file.str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(Error::Format(format!(
            "GGUF tokenizer model {model:?} is not supported (only byte-level BPE, \"gpt2\")"
        )));
    }
    let pre = file
        .get("tokenizer.ggml.pre")
        .and_then(gguf::Value::as_str)
        .unwrap_or("default");
    let pre_tokenizer = match pre {
        "default" | "gpt2" => byte_level(),
        // SmolLM splits every digit, then as GPT-2 (llama.cpp: LLAMA_VOCAB_PRE_TYPE_SMOLLM).
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level()]}),
        other => {
            return Err(Error::Format(format!(
                "GGUF pre-tokenizer {other:?} is not supported (default, gpt2, smollm)"
            )))
        }
    };
    let strings = |key: &str| -> Result<Vec<String>> {
        file.get(key)
            .and_then(gguf::Value::as_array)
            .ok_or_else(|| Error::Format(format!("gguf: {key} missing")))?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Error::Format(format!("gguf: {key} holds a non-string")))
            })
            .collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let types: Vec<u64> = file
        .get("tokenizer.ggml.token_type")
        .and_then(gguf::Value::as_array)
        .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(1)).collect())
        .unwrap_or_default();
    let special: Vec<(u32, &str)> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(types.get(*i), Some(&CONTROL | &USER_DEFINED)))
        .map(|(i, t)| (i as u32, t.as_str()))
        .collect();
    TextCodec::from_json(&bpe_json(&tokens, &merges, &special, &pre_tokenizer).to_string())
}

fn byte_level() -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true})
}

/// A byte-level BPE `tokenizer.json`: `tokens` by id, `merges` as "a b", and the special
/// tokens matched whole in input text. Shared by the GGUF loader and the tiny test model.
pub fn bpe_json(
    tokens: &[String],
    merges: &[String],
    special: &[(u32, &str)],
    pre_tokenizer: &Value,
) -> Value {
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let added: Vec<Value> = special
        .iter()
        .map(|(id, content)| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": pre_tokenizer, "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges}
    })
}

/// The 256 characters byte-level BPE stands for bytes with (GPT-2's table).
pub fn byte_alphabet() -> Vec<String> {
    let mut chars: Vec<char> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
        .into_iter()
        .collect();
    chars.sort_unstable();
    chars.into_iter().map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte-level BPE with no merges: every byte its own token, so multi-byte characters
    /// are cut across tokens.
    fn bytes_only() -> TextCodec {
        TextCodec::from_json(&bpe_json(&byte_alphabet(), &[], &[], &byte_level()).to_string())
            .unwrap()
    }

    #[test]
    fn incremental_decoding_gives_the_whole_decode_and_holds_cut_characters() {
        let codec = bytes_only();
        let text = "naïve café, 東京 ok";
        let ids = codec.encode(text, false).unwrap();
        assert_eq!(ids.len(), text.len(), "one token per byte");
        let mut state = DecodeState::default();
        let (mut out, mut held) = (String::new(), 0);
        for &id in &ids {
            match codec.decode_next(&mut state, id).unwrap() {
                Some(piece) => out.push_str(&piece),
                None => held += 1,
            }
        }
        assert_eq!(out, text);
        assert_eq!(out, codec.decode(&ids).unwrap());
        assert_eq!(
            held,
            text.len() - text.chars().count(),
            "each cut byte held"
        );
        assert_eq!(codec.decode_rest(&state).unwrap(), "");

        // Ending inside a character: held, then shown as a whole decode shows it.
        let cut = &ids[..=text.find('東').unwrap()];
        let mut state = DecodeState::default();
        let shown: String = cut
            .iter()
            .filter_map(|&id| codec.decode_next(&mut state, id).unwrap())
            .collect();
        let rest = codec.decode_rest(&state).unwrap();
        assert_eq!(rest, "\u{FFFD}");
        assert_eq!(shown + &rest, codec.decode(cut).unwrap());
    }
}
