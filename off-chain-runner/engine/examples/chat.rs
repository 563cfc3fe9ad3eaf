//! Chat with a model from the command line:
//!     cargo run -p market-engine --example chat -- models/smollm2-135m-instruct "What is the capital of France?" [cpu]

use std::io::Write;
use std::path::Path;

use market_engine::{Backend, ChatMessage, GenerateOptions, Model};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let backend = if args.get(3).is_some_and(|a| a == "cpu") {
        Backend::Cpu
    } else {
        Backend::Gpu
    };
    let t0 = std::time::Instant::now();
    let Model::Chat(mut model) = Model::load(
        Path::new(&args[1]),
        backend,
        None,
        market_engine::Sha256::Compute,
    )?
    else {
        return Err("not a chat model".into());
    };
    let prompt = model.apply_chat_template(&[ChatMessage {
        role: "user".into(),
        content: args[2].clone(),
    }])?;
    let ids = model.encode(&prompt)?;
    eprintln!("loaded in {:?}", t0.elapsed());
    let t1 = std::time::Instant::now();
    model.logits(&ids)?;
    eprintln!("prefill {:?}", t1.elapsed());
    let t1 = std::time::Instant::now();
    // The next token, in the slot the prefill filled.
    model.step(&[market_engine::StepInput {
        slot: 0,
        pos: ids.len(),
        tokens: &[504],
    }])?;
    eprintln!("one decode step {:?}", t1.elapsed());
    eprintln!("{} prompt tokens: {ids:?}", ids.len());
    let start = std::time::Instant::now();
    let out = model.generate(
        &ids,
        &GenerateOptions {
            max_tokens: 40,
            ..Default::default()
        },
        &mut |piece| {
            print!("{piece}");
            std::io::stdout().flush().is_ok()
        },
    )?;
    println!();
    eprintln!(
        "{:?}, {} tokens in {:?}: {:?}",
        out.finish_reason,
        out.tokens.len(),
        start.elapsed(),
        out.tokens
    );
    Ok(())
}
