//! Quick speed check of the installed models on real messages.
//!
//! ```text
//! cargo run --release -p triage-models --example slm_bench -- [--messages 512] [--replies 8] [--tokens 24]
//!     [--threads 0] [--batch 64] [--data ../shared/data/banking77/test.jsonl]
//!     [--head ../shared/data/banking77/train.jsonl] [--finetuned DIR]
//! ```
//!
//! Prints model load times, encoder messages/s at batch 1, 32 and 64 (plus the whole list sorted by length),
//! the same for the fine-tuned classifier (`--finetuned DIR`, default the installed
//! `models/triage-sentiment4-minilm` when present), generated replies/s, and peak RSS. `--head TRAIN.jsonl` also trains a logistic head on that file's embeddings
//! and reports its accuracy on `--data`. Run `scripts/install-models.sh` first.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use triage_models::{
    ChatMessage, Encoder, FinetunedClassifier, GenerateOptions, Generator, Head, ModelsConfig,
    TrainOptions,
};

struct Args {
    data: PathBuf,
    head: Option<PathBuf>,
    finetuned: Option<PathBuf>,
    messages: usize,
    replies: usize,
    tokens: usize,
    threads: usize,
    batch: usize,
}

fn parse_args() -> Result<Args, String> {
    let root = workspace();
    let mut args = Args {
        data: root.join("../shared/data/banking77/test.jsonl"),
        head: None,
        finetuned: None,
        messages: 512,
        replies: 8,
        tokens: 24,
        threads: 0,
        batch: ModelsConfig::default().encoder_batch_size,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--data" => args.data = value()?.into(),
            "--head" => args.head = Some(value()?.into()),
            "--finetuned" => args.finetuned = Some(value()?.into()),
            "--messages" => args.messages = number(value()?)?,
            "--replies" => args.replies = number(value()?)?,
            "--tokens" => args.tokens = number(value()?)?,
            "--threads" => args.threads = number(value()?)?,
            "--batch" => args.batch = number(value()?)?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `(text, label)` pairs of a JSONL file with `text` and `label` fields.
fn read_jsonl(path: &Path, limit: usize) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .take(limit)
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
            let field = |k: &str| {
                v.get(k)
                    .and_then(|s| s.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            Ok((field("text"), field("label")))
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// `VmHWM:` (peak) or `VmRSS:` (current) from /proc/self/status, in MiB.
fn rss_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let config = ModelsConfig {
        intra_threads: args.threads,
        encoder_batch_size: args.batch,
        ..ModelsConfig::default()
    }
    .resolved(&workspace());
    println!(
        "cpus {}, intra_threads {}",
        std::thread::available_parallelism().map_or(1, usize::from),
        config.effective_intra_threads()
    );

    // Load times. The first load also loads ONNX Runtime and checks sha256; the no-check copies are dropped
    // before the kept ones are loaded, so peak RSS is about one copy of each model.
    let no_verify = ModelsConfig {
        verify_checksums: false,
        ..config.clone()
    };
    println!("RSS at start {:.0} MiB", rss_mib("VmRSS:"));
    let t = Instant::now();
    drop(Encoder::from_config(&config)?);
    let enc_load = t.elapsed();
    println!(
        "RSS after an encoder came and went {:.0} MiB (peak {:.0})",
        rss_mib("VmRSS:"),
        rss_mib("VmHWM:")
    );
    let t = Instant::now();
    drop(Generator::from_config(&config)?);
    let gen_load = t.elapsed();
    println!(
        "RSS after a generator came and went {:.0} MiB (peak {:.0})",
        rss_mib("VmRSS:"),
        rss_mib("VmHWM:")
    );
    let t = Instant::now();
    let encoder = Encoder::from_config(&no_verify)?;
    let enc_load_nv = t.elapsed();
    let t = Instant::now();
    let generator = Generator::from_config(&no_verify)?;
    let gen_load_nv = t.elapsed();
    println!(
        "load (with sha256 check / without): encoder {:.0} / {:.0} ms (the first also loads ONNX Runtime), \
         generator {:.0} / {:.0} ms",
        enc_load.as_secs_f64() * 1e3,
        enc_load_nv.as_secs_f64() * 1e3,
        gen_load.as_secs_f64() * 1e3,
        gen_load_nv.as_secs_f64() * 1e3
    );

    let rows = read_jsonl(&args.data, args.messages)?;
    let texts: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let tokens: usize = texts
        .iter()
        .map(|t| encoder.count_tokens(t).unwrap_or(0))
        .sum();
    println!(
        "encoder: {} messages from {} (mean {:.1} tokens)",
        texts.len(),
        args.data.display(),
        tokens as f64 / texts.len().max(1) as f64
    );
    encoder.embed(&texts[..texts.len().min(64)])?; // warm-up

    let mut lat = Vec::with_capacity(texts.len());
    let t = Instant::now();
    for text in &texts {
        let s = Instant::now();
        encoder.embed_one(text)?;
        lat.push(s.elapsed());
    }
    let secs = t.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "  batch  1: {:7.0} msg/s  (p50 {:.2} ms, p99 {:.2} ms)",
        texts.len() as f64 / secs,
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3
    );
    for batch in [32, 64] {
        let t = Instant::now();
        for chunk in texts.chunks(batch) {
            encoder.embed(chunk)?;
        }
        println!(
            "  batch {batch:2}: {:7.0} msg/s  (arrival order)",
            texts.len() as f64 / t.elapsed().as_secs_f64()
        );
    }
    let t = Instant::now();
    encoder.embed(&texts)?;
    println!(
        "  all {}: {:7.0} msg/s  (one call: sorted by length, batches of {})",
        texts.len(),
        texts.len() as f64 / t.elapsed().as_secs_f64(),
        args.batch
    );

    let finetuned = args
        .finetuned
        .clone()
        .or_else(|| Some(config.default_finetuned_dir()).filter(|d| d.is_dir()));
    if let Some(dir) = finetuned {
        let t = Instant::now();
        let c = FinetunedClassifier::load(&dir, &config)?;
        println!(
            "fine-tuned classifier {} ({} labels): load {:.0} ms (sha256 check included)",
            dir.display(),
            c.labels().len(),
            t.elapsed().as_secs_f64() * 1e3
        );
        c.classify(&texts[..texts.len().min(64)])?; // warm-up
        let t = Instant::now();
        for text in &texts {
            c.classify(&[text])?;
        }
        println!(
            "  batch  1: {:7.0} msg/s",
            texts.len() as f64 / t.elapsed().as_secs_f64()
        );
        for batch in [8, 16, 32, 64] {
            let t = Instant::now();
            for chunk in texts.chunks(batch) {
                c.classify(chunk)?;
            }
            println!(
                "  batch {batch:2}: {:7.0} msg/s  (arrival order, as served)",
                texts.len() as f64 / t.elapsed().as_secs_f64()
            );
        }
    }

    if let Some(train_path) = &args.head {
        let train = read_jsonl(train_path, usize::MAX)?;
        let test = read_jsonl(&args.data, usize::MAX)?;
        let mut labels: Vec<String> = train.iter().map(|r| r.1.clone()).collect();
        labels.sort();
        labels.dedup();
        let index = |l: &str| labels.binary_search_by(|x| x.as_str().cmp(l)).ok();
        let t = Instant::now();
        let xtr = encoder.embed(&train.iter().map(|r| r.0.as_str()).collect::<Vec<_>>())?;
        let xte = encoder.embed(&test.iter().map(|r| r.0.as_str()).collect::<Vec<_>>())?;
        let embed_time = t.elapsed();
        let ytr: Vec<usize> = train.iter().filter_map(|r| index(&r.1)).collect();
        let t = Instant::now();
        let head = Head::train(&xtr, &ytr, &labels, &TrainOptions::default())?;
        let train_time = t.elapsed();
        let pred = head.predict(&xte)?;
        let correct = pred
            .iter()
            .zip(&test)
            .filter(|(p, r)| Some(**p) == index(&r.1))
            .count();
        println!(
            "head: {} train / {} test messages, {} labels: accuracy {:.1}% (embed {:.1} s, train {:.1} s)",
            train.len(),
            test.len(),
            labels.len(),
            100.0 * correct as f64 / test.len().max(1) as f64,
            embed_time.as_secs_f64(),
            train_time.as_secs_f64()
        );
    }

    if args.replies == 0 {
        return Ok(());
    }
    let opts = GenerateOptions {
        max_new_tokens: args.tokens,
        ..GenerateOptions::default()
    };
    let (mut n_tokens, mut n_prompt, mut prefill, mut decode) =
        (0usize, 0usize, Duration::ZERO, Duration::ZERO);
    let t = Instant::now();
    for (i, text) in texts.iter().take(args.replies).enumerate() {
        let messages = [
            ChatMessage::system("You are a bank's support assistant. Reply in one short sentence."),
            ChatMessage::user(*text),
        ];
        let g = generator.chat(&messages, &opts)?;
        n_tokens += g.tokens.len();
        n_prompt += g.prompt_tokens;
        prefill += g.prefill;
        decode += g.decode;
        if i < 2 {
            println!("  {text:?} -> {:?} ({:?})", g.text, g.finish);
        }
    }
    let n = args.replies.min(texts.len()).max(1);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "generator: {n} replies of up to {} tokens: {:.2} replies/s, {:.1} tokens/reply, prefill {:.0} ms/reply ({:.0}-token prompts), \
         decode {:.1} ms/token",
        args.tokens,
        n as f64 / secs,
        n_tokens as f64 / n as f64,
        prefill.as_secs_f64() * 1e3 / n as f64,
        n_prompt as f64 / n as f64,
        decode.as_secs_f64() * 1e3 / n_tokens.saturating_sub(n).max(1) as f64
    );
    println!(
        "RSS now {:.0} MiB, peak {:.0} MiB",
        rss_mib("VmRSS:"),
        rss_mib("VmHWM:")
    );
    Ok(())
}
