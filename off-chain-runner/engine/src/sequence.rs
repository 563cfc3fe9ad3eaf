//! One generation's state, for a scheduler that steps many at once: its KV slot, its tokens,
//! its own seeded sampler, its stop strings, the text it has streamed so far and why it
//! finished. A sequence knows what to feed next ([`Sequence::next_input`]); the model runs
//! the inputs of many sequences in one [`ChatModel::step`] and hands each its logits
//! ([`ChatModel::advance`]), which returns the new text.
//!
//! A scheduler's loop, in short:
//!
//! ```text
//! let mut seq = model.start_sequence(slot, &prompt, &opts)?;
//! loop {
//!     let inputs: Vec<StepInput> = running.iter_mut().filter_map(|s| s.next_input(chunk)).collect();
//!     let logits = model.step(&inputs)?;
//!     for (seq, logits) in stepped.zip(logits) { let delta = model.advance(seq, &logits)?; … }
//! }
//! ```
//!
//! [`ChatModel::step`]: crate::llama::ChatModel::step
//! [`ChatModel::advance`]: crate::llama::ChatModel::advance

use crate::api::{FinishReason, GenerateOptions, Generation};
use crate::llama::{ChatText, StepInput};
use crate::sample::Sampler;
use crate::tokenizer::DecodeState;
use crate::{Error, Result};

/// What one step did to a sequence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Text to show now: only what is new since the last delta. Held back: half of a
    /// multi-byte character and a tail that may begin a stop string, until they resolve.
    pub text: String,
    /// The token sampled, if this step ended the prompt or was a decode step (a stop token
    /// is not one: the sequence finishes without it).
    pub token: Option<u32>,
    /// Set once the sequence is over; its slot may then be given to another.
    pub finished: Option<FinishReason>,
}

/// What a step gave a sequence to pick its next token from.
#[derive(Clone, Copy)]
pub(crate) enum Pick<'a> {
    Logits(&'a [f32]),
    /// The argmax, made by the step: only for a greedy sequence.
    Greedy(u32),
}

/// A generation in progress in one KV slot.
pub struct Sequence {
    slot: usize,
    /// The prompt, then every generated token.
    tokens: Vec<u32>,
    prompt_len: usize,
    /// Tokens in the slot's cache.
    fed: usize,
    /// Tokens of the input handed out by `next_input`, not yet advanced.
    pending: usize,
    sampler: Sampler,
    max_tokens: usize,
    context: usize,
    stop: Vec<String>,
    /// The generated tokens' text, cut at a stop string; grown a token at a time.
    text: String,
    /// The incremental decoder's state: the bytes of a character not yet complete.
    decoder: DecodeState,
    /// Bytes of `text` already returned in deltas.
    sent: usize,
    finish: Option<FinishReason>,
}

impl Sequence {
    /// A sequence for `prompt` (checked by the model) in `slot`, whose first `cached`
    /// tokens the slot already holds.
    pub(crate) fn new(
        slot: usize,
        prompt: &[u32],
        cached: usize,
        opts: &GenerateOptions,
        context: usize,
    ) -> Sequence {
        Sequence {
            slot,
            tokens: prompt.to_vec(),
            prompt_len: prompt.len(),
            fed: cached,
            pending: 0,
            sampler: Sampler::new(opts.temperature, opts.top_p, opts.seed),
            max_tokens: opts.max_tokens,
            context,
            stop: opts.stop.clone(),
            text: String::new(),
            decoder: DecodeState::default(),
            sent: 0,
            // Nothing to generate: done before running anything.
            finish: (opts.max_tokens == 0).then_some(FinishReason::Length),
        }
    }

    pub fn slot(&self) -> usize {
        self.slot
    }

    pub fn prompt(&self) -> &[u32] {
        &self.tokens[..self.prompt_len]
    }

    /// Tokens generated so far (a stop token excluded).
    pub fn generated(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }

    /// The text generated so far, cut at a stop string (some of it maybe not yet in a delta).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Positions of the slot this sequence has filled.
    pub fn position(&self) -> usize {
        self.fed
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    pub fn is_finished(&self) -> bool {
        self.finish.is_some()
    }

    /// What to run next for this sequence: up to `chunk` more prompt tokens, or the token
    /// last sampled; `None` once finished. Calling it again before [`ChatModel::advance`]
    /// hands out the same input again (with the new `chunk`).
    ///
    /// [`ChatModel::advance`]: crate::llama::ChatModel::advance
    pub fn next_input(&mut self, chunk: usize) -> Option<StepInput<'_>> {
        if self.finish.is_some() || self.fed >= self.tokens.len() {
            return None;
        }
        self.pending = chunk.max(1).min(self.tokens.len() - self.fed);
        Some(StepInput {
            slot: self.slot,
            pos: self.fed,
            tokens: &self.tokens[self.fed..self.fed + self.pending],
        })
    }

    /// Whether the step running its next input of at most `chunk` tokens must hand back
    /// logits: only for a sequence that samples, when that input ends its prompt or is a
    /// decode token. A greedy one takes the step's pick
    /// ([`crate::llama::StepOutput::Greedy`]); a prompt chunk before the last needs neither.
    pub fn needs_logits(&self, chunk: usize) -> bool {
        !self.sampler.is_greedy() && self.tokens.len().saturating_sub(self.fed) <= chunk.max(1)
    }

    /// Ends the sequence (the client went away): it finishes as stopped, with its text so
    /// far.
    pub fn cancel(&mut self) {
        self.finish.get_or_insert(FinishReason::Stop);
    }

    /// Takes the logits of the input `next_input` handed out.
    pub(crate) fn advance(&mut self, text: &ChatText, pick: Pick<'_>) -> Result<Delta> {
        if self.finish.is_some() {
            return Err(Error::Input(format!(
                "the sequence in slot {} has finished",
                self.slot
            )));
        }
        if self.pending == 0 {
            return Err(Error::Input(format!(
                "the sequence in slot {} has no input in flight: take one with next_input and \
                 step it first",
                self.slot
            )));
        }
        if matches!(pick, Pick::Logits(logits) if logits.is_empty()) {
            return Err(Error::Input("empty logits".into()));
        }
        self.fed += std::mem::take(&mut self.pending);
        if self.fed < self.tokens.len() {
            // A prompt chunk before the last: its logits predict nothing asked for.
            return Ok(Delta::default());
        }
        let next = match pick {
            Pick::Logits(logits) => self.sampler.pick(logits),
            Pick::Greedy(token) if self.sampler.is_greedy() => token,
            Pick::Greedy(_) => {
                return Err(Error::Input(format!(
                    "the sequence in slot {} samples: it needs logits, not a greedy pick",
                    self.slot
                )))
            }
        };
        if text.stop_ids.contains(&next) {
            self.flush(text)?;
            return Ok(self.finish(FinishReason::Stop, None));
        }
        self.tokens.push(next);
        // Only the new token is decoded (with the few before it that its text depends on):
        // a generation's text costs linear time, not a decode of everything per token.
        let searched = self.text.len();
        let held = match text.codec.decode_next(&mut self.decoder, next)? {
            Some(piece) => {
                self.text.push_str(&piece);
                String::new()
            }
            // A character not yet complete: a stop string may end before it, as a whole
            // decode would show.
            None => text.codec.decode_rest(&self.decoder)?,
        };
        if let Some(at) = find_stop(&self.text, searched, &held, &self.stop) {
            match at.checked_sub(self.text.len()) {
                Some(into_held) => self.text.push_str(&held[..into_held]),
                None => self.text.truncate(at),
            }
            return Ok(self.finish(FinishReason::Stop, Some(next)));
        }
        if self.generated().len() >= self.max_tokens || self.tokens.len() >= self.context {
            self.flush(text)?;
            return Ok(self.finish(FinishReason::Length, Some(next)));
        }
        let safe = safe_prefix(&self.text, &self.stop);
        let text = if safe > self.sent {
            let new = self.text[self.sent..safe].to_owned();
            self.sent = safe;
            new
        } else {
            String::new()
        };
        let delta = Delta {
            text,
            token: Some(next),
            finished: None,
        };
        Ok(delta)
    }

    /// Adds what the decoder still holds (the start of a character the generation ended
    /// inside, shown as U+FFFD as a whole decode shows it).
    fn flush(&mut self, text: &ChatText) -> Result<()> {
        let rest = text.codec.decode_rest(&self.decoder)?;
        self.text.push_str(&rest);
        Ok(())
    }

    /// Finishes with everything not yet shown.
    fn finish(&mut self, reason: FinishReason, token: Option<u32>) -> Delta {
        self.finish = Some(reason);
        let rest = self.text.get(self.sent..).unwrap_or_default().to_owned();
        self.sent = self.text.len();
        Delta {
            text: rest,
            token,
            finished: Some(reason),
        }
    }

    /// The result, once finished (or as it stands). Its prompt tokens are those the slot
    /// holds: all of them unless it was cancelled during its prefill, when only the
    /// positions run (or copied from the public prefix) count, which is what is metered.
    pub fn into_generation(self) -> Generation {
        Generation {
            prompt_tokens: self.prompt_len.min(self.fed),
            tokens: self.tokens[self.prompt_len..].to_vec(),
            text: self.text,
            finish_reason: self.finish.unwrap_or(FinishReason::Length),
        }
    }
}

/// Where the first stop string in `text` followed by `tail` begins, knowing that
/// `text[..searched]` held none: only the end a stop string could end in is searched.
fn find_stop(text: &str, searched: usize, tail: &str, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let mut from = searched.saturating_sub(s.len() - 1);
            while !text.is_char_boundary(from) {
                from -= 1;
            }
            let found = if tail.is_empty() {
                text[from..].find(s.as_str())
            } else {
                // Only while the decoder holds bytes (rare): the window is a few bytes.
                [&text[from..], tail].concat().find(s.as_str())
            };
            found.map(|i| from + i)
        })
        .min()
}

/// How much of `text` can be shown: not a tail that could begin a stop string. (Half of
/// a multi-byte character never reaches `text`: the decoder holds it.)
fn safe_prefix(text: &str, stops: &[String]) -> usize {
    let mut end = text.len();
    for stop in stops {
        for (i, _) in stop.char_indices().skip(1) {
            if text.ends_with(&stop[..i]) {
                end = end.min(text.len() - i);
            }
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_holds_back_partial_stops() {
        let stops = vec!["\nUser:".to_owned()];
        assert_eq!(safe_prefix("Hello\nUs", &stops), 5);
        assert_eq!(safe_prefix("Hello", &stops), 5);
    }

    #[test]
    fn a_stop_string_is_found_across_the_searched_boundary_and_only_there() {
        let stops = vec!["\nUser:".to_owned(), "é!".to_owned()];
        // The stop began before `searched` and ends after it.
        assert_eq!(find_stop("Hi\nUser: x", 5, "", &stops), Some(2));
        assert_eq!(find_stop("caféé!", 7, "", &stops), Some(5));
        // The window would start inside a character: it starts at the character instead.
        assert_eq!(find_stop("caféé!", 8, "", &stops), Some(5));
        assert_eq!(find_stop("Hi there", 3, "", &stops), None);
        assert_eq!(find_stop("anything", 0, "", &[String::new()]), None);
        // A stop completed by bytes the decoder still holds (a character cut after it).
        assert_eq!(find_stop("Hi\nUs", 4, "er:\u{FFFD}", &stops), Some(2));
        assert_eq!(find_stop("caf", 3, "é!\u{FFFD}", &stops), Some(3));
    }
}
