//! A streamed OpenAI chat completion as a client reads it: the JSON events of a
//! server-sent-event body, then `[DONE]`. For the runner's tests and the demo.

use serde_json::Value;

pub struct ChatStream {
    /// Every `data:` event before `[DONE]`, parsed.
    pub events: Vec<Value>,
    /// Whether the stream ended with `data: [DONE]`.
    pub done: bool,
}

impl ChatStream {
    /// Parses a whole event-stream body; an event that is not JSON is an error.
    pub fn parse(body: &str) -> Result<Self, serde_json::Error> {
        let mut events = Vec::new();
        let mut done = false;
        for data in body.lines().filter_map(|l| l.strip_prefix("data: ")) {
            if data == "[DONE]" {
                done = true;
            } else {
                events.push(serde_json::from_str(data)?);
            }
        }
        Ok(Self { events, done })
    }

    /// The text of the content deltas, in order.
    pub fn content(&self) -> String {
        self.events
            .iter()
            .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
            .collect()
    }

    /// The last event, which carries the usage and the receipt.
    pub fn last(&self) -> Option<&Value> {
        self.events.last()
    }
}
