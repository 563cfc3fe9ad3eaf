//! Loading a model from files held in memory (sealed weights the runner decrypted, which
//! never reach the disk) against loading the same files from their path: the same outputs
//! to the bit, the same weights hash as `market_protocol::weights` gives on disk, and the
//! same refusals. All on the CPU reference, which is deterministic.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use market_engine::llama::ChatModel;
use market_engine::quant::Format;
use market_engine::testing::write_tiny_llama;
use market_engine::weights::Stamp;
use market_engine::{Backend, Error, GenerateOptions, Model, ModelFiles, Sha256};
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;

const PROMPT: [u32; 12] = [1, 72, 101, 108, 108, 111, 32, 116, 104, 101, 114, 101];

/// A fresh copy per test: tests run in parallel and delete their copies.
fn tiny(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tiny-llama-mem-{test}-{}", std::process::id()));
    write_tiny_llama(&dir, Format::F16, 42).unwrap();
    dir
}

/// Every file directly inside `dir` (or `dir` itself when it is a file), as the runner
/// would hold them after decrypting.
fn read_all(path: &Path) -> Vec<(String, Vec<u8>)> {
    let files: Vec<PathBuf> = if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect()
    };
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// The files of `path` in memory, named as the path loader names the model.
fn in_memory(path: &Path) -> ModelFiles {
    ModelFiles::new(read_all(path))
        .unwrap()
        .with_name(path.file_name().unwrap().to_str().unwrap())
}

fn chat(model: Model) -> ChatModel {
    match model {
        Model::Chat(m) => m,
        Model::Embedding(_) => panic!("a llama loads as a chat model"),
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Logits of the prompt and a greedy continuation: what must not differ between sources.
fn outputs(m: &mut ChatModel, prompt: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let logits = bits(&m.logits(prompt).unwrap());
    let greedy = GenerateOptions {
        max_tokens: 8,
        ..GenerateOptions::default()
    };
    let tokens = m.generate(prompt, &greedy, &mut |_| true).unwrap().tokens;
    (logits, tokens)
}

/// Splits the tiny llama's one safetensors file into two shards, as large checkpoints come:
/// the weights hash then lists both files rather than being one file's sha256.
fn shard(dir: &Path) {
    let whole = std::fs::read(dir.join("model.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&whole).unwrap();
    let mut names: Vec<String> = tensors.names().into_iter().map(str::to_owned).collect();
    names.sort();
    let half = names.len() / 2;
    for (i, part) in [&names[..half], &names[half..]].into_iter().enumerate() {
        let views: Vec<(String, TensorView)> = part
            .iter()
            .map(|n| (n.clone(), tensors.tensor(n).unwrap()))
            .collect();
        let bytes = safetensors::tensor::serialize(views, None::<HashMap<String, String>>).unwrap();
        let name = format!("model-0000{}-of-00002.safetensors", i + 1);
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
}

#[test]
fn tiny_llama_from_memory_is_bit_identical_to_its_path() {
    let dir = tiny("same");
    let mut from_path = chat(Model::load(&dir, Backend::Cpu, None, Sha256::Compute).unwrap());
    let mut from_memory = chat(
        Model::load_from_memory(in_memory(&dir), Backend::Cpu, None, Sha256::Compute).unwrap(),
    );
    assert_eq!(from_memory.name(), from_path.name());
    assert_eq!(from_memory.weights_sha256(), from_path.weights_sha256());
    assert_eq!(from_memory.context_length(), from_path.context_length());
    let expected = outputs(&mut from_path, &PROMPT);
    assert_eq!(outputs(&mut from_memory, &PROMPT), expected);

    // The chosen context applies to memory as to a path.
    let files = in_memory(&dir);
    let short = Model::load_with_context(
        market_engine::Source::Memory(&files),
        Backend::Cpu,
        None,
        Sha256::Compute,
        Some(64),
    )
    .unwrap();
    assert_eq!(chat(short).context_length(), 64);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sharded_weights_hash_as_on_disk_and_a_wrong_hash_is_refused() {
    let dir = tiny("shards");
    shard(&dir);
    let on_disk = market_protocol::weights::weights_sha256(&dir, |_, _| {}).unwrap();
    let files = in_memory(&dir);
    for (name, bytes) in read_all(&dir) {
        if name.ends_with(".safetensors") {
            assert_ne!(
                on_disk,
                <[u8; 32]>::from(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
                "two shards: the hash is their listing's, not one file's"
            );
        }
    }

    let mut from_memory = chat(
        Model::load_from_memory(files.clone(), Backend::Cpu, None, Sha256::Expect(on_disk))
            .unwrap(),
    );
    assert_eq!(from_memory.weights_sha256(), on_disk);
    let mut from_path =
        chat(Model::load(&dir, Backend::Cpu, None, Sha256::Expect(on_disk)).unwrap());
    assert_eq!(
        outputs(&mut from_memory, &PROMPT),
        outputs(&mut from_path, &PROMPT)
    );

    let mut wrong = on_disk;
    wrong[31] ^= 1;
    let err = Model::load_from_memory(files.clone(), Backend::Cpu, None, Sha256::Expect(wrong))
        .err()
        .unwrap();
    assert!(matches!(err, Error::HashMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains(&hex::encode(on_disk)),
        "says what it found: {err}"
    );

    // Hashed by the caller while decrypting: trusted for these files, not for others.
    let known = |stamp: Stamp| Sha256::Known {
        sha256: on_disk,
        stamp,
    };
    let stamp = Stamp::of_files(&files).unwrap();
    assert!(Model::load_from_memory(files.clone(), Backend::Cpu, None, known(stamp)).is_ok());
    let disk_stamp = Stamp::of(&dir).unwrap();
    let err = Model::load_from_memory(files.clone(), Backend::Cpu, None, known(disk_stamp))
        .err()
        .unwrap();
    assert!(matches!(err, Error::WeightsChanged(_)), "{err}");
    let mut grown = read_all(&dir);
    grown
        .iter_mut()
        .find(|(n, _)| n.ends_with(".safetensors"))
        .unwrap()
        .1
        .push(0);
    let grown = ModelFiles::new(grown).unwrap();
    let err = Model::load_from_memory(
        grown,
        Backend::Cpu,
        None,
        known(Stamp::of_files(&files).unwrap()),
    )
    .err()
    .unwrap();
    assert!(matches!(err, Error::WeightsChanged(_)), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_missing_file_is_named() {
    let dir = tiny("missing");
    let without = |name: &str| {
        let files: Vec<_> = read_all(&dir)
            .into_iter()
            .filter(|(n, _)| n != name)
            .collect();
        Model::load_from_memory(
            ModelFiles::new(files).unwrap(),
            Backend::Cpu,
            None,
            Sha256::Compute,
        )
    };
    for name in ["config.json", "tokenizer.json"] {
        let err = without(name).err().unwrap();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert!(
            err.to_string().starts_with(&format!("{name}: not among")),
            "{err}"
        );
    }
    let err = without("model.safetensors").err().unwrap().to_string();
    assert!(err.contains("no .gguf or .safetensors file"), "{err}");
    // As on disk, tokenizer_config.json is optional: ChatML and no special bos/eos.
    assert!(without("tokenizer_config.json").is_ok());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn real_gguf_and_bert_from_memory_are_bit_identical_to_their_paths() {
    // SmolLM2: one quantized .gguf file, its tokenizer and template inside it.
    let smol = common::model("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut from_path = chat(Model::load(&smol, Backend::Cpu, None, Sha256::Compute).unwrap());
    let prompt = from_path.encode("The capital of France is").unwrap();
    let expected = outputs(&mut from_path, &prompt);
    let hash = from_path.weights_sha256();
    drop(from_path);
    let files = ModelFiles::new(read_all(&smol)).unwrap();
    let mut from_memory =
        chat(Model::load_from_memory(files, Backend::Cpu, None, Sha256::Expect(hash)).unwrap());
    assert_eq!(
        from_memory.encode("The capital of France is").unwrap(),
        prompt
    );
    assert_eq!(outputs(&mut from_memory, &prompt), expected);
    drop(from_memory);

    // all-MiniLM-L6-v2: a Hugging Face directory with sentence_bert_config.json.
    let mini = common::model("all-minilm-l6-v2");
    let embed = |model: Model| {
        let Model::Embedding(mut m) = model else {
            panic!("a bert loads as an embedding model")
        };
        let out = m.embed(&["sealed weights, decrypted in memory"]).unwrap();
        (m.max_tokens(), out[0].tokens, bits(&out[0].vector))
    };
    let from_path = embed(Model::load(&mini, Backend::Cpu, None, Sha256::Compute).unwrap());
    let from_memory = embed(
        Model::load_from_memory(in_memory(&mini), Backend::Cpu, None, Sha256::Compute).unwrap(),
    );
    assert_eq!(from_memory, from_path);
}
