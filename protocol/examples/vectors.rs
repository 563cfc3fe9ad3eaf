//! Writes the known-answer vectors: `cargo run -p market-protocol --example vectors
//! --features sign > protocol/vectors.json`.
fn main() {
    println!(
        "{}",
        near_sdk::serde_json::to_string_pretty(&market_protocol::vectors::vectors()).unwrap()
    );
}
