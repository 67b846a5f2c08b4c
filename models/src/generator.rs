//! Text generation with SmolLM2-135M-Instruct (int4 ONNX with a KV cache).
//!
//! The layer, KV-head and head-size counts, the eos ids and the input/output names come from
//! `genai_config.json`. A prompt runs once in full (prefill), then one token per step with the cache from the
//! previous step. Decoding is greedy (`temperature = 0`) or sampled with temperature / top-k / top-p from a
//! seeded generator, so a given seed always gives the same text.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor, TensorElementType};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::ModelsConfig;
use crate::error::{ModelsError, Result};
use crate::runtime;
use crate::verify::Manifest;

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl ChatMessage {
    /// A `system` turn.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: "system".into(),
            content: content.into(),
        }
    }

    /// A `user` turn.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }

    /// An `assistant` turn.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// How to decode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateOptions {
    /// Most tokens to generate (default 64).
    pub max_new_tokens: usize,
    /// 0 (the default) decodes greedily; above 0, logits are divided by it and a token is sampled.
    pub temperature: f32,
    /// Nucleus sampling: keep the most probable tokens whose probabilities add up to this (default 1.0 = all).
    pub top_p: f32,
    /// Keep only the `top_k` most probable tokens before sampling; 0 (the default) keeps all.
    pub top_k: usize,
    /// Seed of the sampler (default 0); the same seed gives the same text.
    pub seed: u64,
    /// Stop when the text contains any of these; the text is cut before it (default none). The eos ids of
    /// `genai_config.json` (`<|im_end|>`) always stop generation.
    pub stop_strings: Vec<String>,
    /// Penalty on tokens already generated (1.0, the default, is none; 1.1–1.3 stops a small model from
    /// looping on a phrase).
    pub repetition_penalty: f32,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            stop_strings: Vec::new(),
            repetition_penalty: 1.0,
        }
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model produced an eos token.
    Eos,
    /// A stop string appeared.
    StopString,
    /// `max_new_tokens` were generated.
    MaxTokens,
    /// The model's context window is full.
    ContextFull,
}

/// The result of one generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The generated text (special tokens and any stop string removed).
    pub text: String,
    /// The generated token ids (without the eos token).
    pub tokens: Vec<u32>,
    /// Number of prompt tokens.
    pub prompt_tokens: usize,
    /// Why it stopped.
    pub finish: FinishReason,
    /// Tokenising the prompt and the prefill forward pass.
    pub prefill: Duration,
    /// All the one-token steps after the prefill.
    pub decode: Duration,
}

impl Generation {
    /// Decode speed in tokens per second (0 if nothing was decoded after the first token).
    pub fn decode_tokens_per_sec(&self) -> f64 {
        let steps = self.tokens.len().saturating_sub(1);
        if steps == 0 || self.decode.is_zero() {
            0.0
        } else {
            steps as f64 / self.decode.as_secs_f64()
        }
    }
}

/// The parts of `genai_config.json` we use.
#[derive(Debug, Deserialize)]
struct GenaiConfig {
    model: GenaiModel,
}

#[derive(Debug, Deserialize)]
struct GenaiModel {
    context_length: usize,
    eos_token_id: OneOrMany,
    vocab_size: usize,
    decoder: GenaiDecoder,
}

#[derive(Debug, Deserialize)]
struct GenaiDecoder {
    filename: String,
    head_size: usize,
    num_hidden_layers: usize,
    num_key_value_heads: usize,
    inputs: GenaiInputs,
    outputs: GenaiOutputs,
}

#[derive(Debug, Deserialize)]
struct GenaiInputs {
    input_ids: String,
    attention_mask: String,
    #[serde(default)]
    position_ids: Option<String>,
    past_key_names: String,
    past_value_names: String,
}

#[derive(Debug, Deserialize)]
struct GenaiOutputs {
    logits: String,
    present_key_names: String,
    present_value_names: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

/// A loaded chat model. `Send + Sync`; one generation runs at a time (the session sits behind a mutex).
pub struct Generator {
    session: Mutex<Session>,
    tokenizer: Tokenizer,
    dir: PathBuf,
    eos: Vec<u32>,
    context_length: usize,
    vocab_size: usize,
    kv_heads: usize,
    head_size: usize,
    input_ids: String,
    attention_mask: String,
    position_ids: Option<String>,
    logits: String,
    /// `past_key_values.N.key/value` input names, key then value per layer.
    past_names: Vec<String>,
    /// `present.N.key/value` output names, in the same order.
    present_names: Vec<String>,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("dir", &self.dir)
            .field("layers", &(self.past_names.len() / 2))
            .field("kv_heads", &self.kv_heads)
            .field("head_size", &self.head_size)
            .finish_non_exhaustive()
    }
}

/// SmolLM2's default system prompt, used when a conversation does not start with a system turn.
pub const DEFAULT_SYSTEM_PROMPT: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

impl Generator {
    /// The decoder configuration inside the generator directory.
    pub const CONFIG_FILE: &'static str = "genai_config.json";
    /// The tokenizer inside the generator directory.
    pub const TOKENIZER_FILE: &'static str = "tokenizer.json";

    /// Loads the model in `dir` (`genai_config.json`, `tokenizer.json`, the graph it names and its
    /// `.onnx.data`), initialising ONNX Runtime if needed, after checking the files against the manifest when
    /// `config.verify_checksums` is set.
    pub fn load(dir: impl AsRef<Path>, config: &ModelsConfig) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        config.validate().map_err(ModelsError::Config)?;
        let config_path = dir.join(Self::CONFIG_FILE);
        let tokenizer_path = dir.join(Self::TOKENIZER_FILE);
        for path in [&dir, &config_path, &tokenizer_path] {
            if !path.exists() {
                return Err(ModelsError::ModelMissing { path: path.clone() });
            }
        }
        let corrupt = |path: &Path, reason: String| ModelsError::ModelCorrupt {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| corrupt(&config_path, e.to_string()))?;
        let genai: GenaiConfig =
            serde_json::from_str(&text).map_err(|e| corrupt(&config_path, e.to_string()))?;
        let m = &genai.model;
        let d = &m.decoder;
        let model = dir.join(&d.filename);
        let data = dir.join(format!("{}.data", d.filename));
        for path in [&model, &data] {
            if !path.exists() {
                return Err(ModelsError::ModelMissing { path: path.clone() });
            }
        }
        if config.verify_checksums {
            Manifest::load_or_builtin(config.manifest.as_deref())?.verify_dir(&dir)?;
        }
        let runtime = runtime::init(config)?;
        let tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| corrupt(&tokenizer_path, e.to_string()))?;
        let session = runtime.session(&model, config)?;

        let layer_name = |fmt: &str, i: usize| fmt.replace("%d", &i.to_string());
        let mut past_names = Vec::with_capacity(2 * d.num_hidden_layers);
        let mut present_names = Vec::with_capacity(2 * d.num_hidden_layers);
        for i in 0..d.num_hidden_layers {
            past_names.push(layer_name(&d.inputs.past_key_names, i));
            past_names.push(layer_name(&d.inputs.past_value_names, i));
            present_names.push(layer_name(&d.outputs.present_key_names, i));
            present_names.push(layer_name(&d.outputs.present_value_names, i));
        }
        // The graph must have the inputs genai_config.json names, with a float32 KV cache.
        let find = |name: &str| {
            session
                .inputs()
                .iter()
                .find(|i| i.name() == name)
                .ok_or_else(|| {
                    corrupt(
                        &model,
                        format!(
                            "the graph has no input `{name}` that {} names",
                            Self::CONFIG_FILE
                        ),
                    )
                })
        };
        find(&d.inputs.input_ids)?;
        find(&d.inputs.attention_mask)?;
        for name in &past_names {
            let ty = find(name)?.dtype().tensor_type();
            if ty != Some(TensorElementType::Float32) {
                return Err(ModelsError::Config(format!(
                    "{} has a {ty:?} KV cache; only float32 (the int4 CPU build) is supported",
                    model.display()
                )));
            }
        }
        let position_ids = d
            .inputs
            .position_ids
            .clone()
            .filter(|name| session.inputs().iter().any(|i| i.name() == name));

        let eos = match &m.eos_token_id {
            OneOrMany::One(id) => vec![*id],
            OneOrMany::Many(ids) => ids.clone(),
        };
        let generator = Self {
            session: Mutex::new(session),
            tokenizer,
            dir,
            eos,
            context_length: m.context_length,
            vocab_size: m.vocab_size,
            kv_heads: d.num_key_value_heads,
            head_size: d.head_size,
            input_ids: d.inputs.input_ids.clone(),
            attention_mask: d.inputs.attention_mask.clone(),
            position_ids,
            logits: d.outputs.logits.clone(),
            past_names,
            present_names,
        };
        tracing::info!(dir = %generator.dir.display(), "loaded generator");
        Ok(generator)
    }

    /// Loads the generator from `config.generator_dir()`.
    pub fn from_config(config: &ModelsConfig) -> Result<Self> {
        Self::load(config.generator_dir(), config)
    }

    /// The directory the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Token ids that end generation (from `genai_config.json`).
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos
    }

    /// The model's context window in tokens.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Number of tokens `text` becomes.
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.tokenize(text)?.len())
    }

    /// Renders a conversation in SmolLM2's chat format (ChatML: `<|im_start|>role\n...<|im_end|>\n`), ending with
    /// `<|im_start|>assistant\n`. Like the model's `chat_template.jinja`, it adds the default system prompt when
    /// the conversation does not start with a system turn.
    pub fn render_chat(messages: &[ChatMessage]) -> String {
        let mut out = String::new();
        if messages.first().is_some_and(|m| m.role != "system") {
            out.push_str("<|im_start|>system\n");
            out.push_str(DEFAULT_SYSTEM_PROMPT);
            out.push_str("<|im_end|>\n");
        }
        for m in messages {
            out.push_str("<|im_start|>");
            out.push_str(&m.role);
            out.push('\n');
            out.push_str(&m.content);
            out.push_str("<|im_end|>\n");
        }
        out.push_str("<|im_start|>assistant\n");
        out
    }

    /// Replies to a conversation: [`Generator::render_chat`], then [`Generator::generate`].
    pub fn chat(&self, messages: &[ChatMessage], opts: &GenerateOptions) -> Result<Generation> {
        self.generate(&Self::render_chat(messages), opts)
    }

    /// Continues `prompt` (already in the chat format, or raw text).
    pub fn generate(&self, prompt: &str, opts: &GenerateOptions) -> Result<Generation> {
        if !(opts.temperature.is_finite() && opts.temperature >= 0.0) {
            return Err(ModelsError::InvalidInput(format!(
                "temperature must be >= 0, got {}",
                opts.temperature
            )));
        }
        if !(opts.top_p > 0.0 && opts.top_p <= 1.0) {
            return Err(ModelsError::InvalidInput(format!(
                "top_p must be in (0, 1], got {}",
                opts.top_p
            )));
        }
        let start = Instant::now();
        let prompt_ids = self.tokenize(prompt)?;
        if prompt_ids.is_empty() {
            return Err(ModelsError::InvalidInput("the prompt is empty".into()));
        }
        if prompt_ids.len() >= self.context_length {
            return Err(ModelsError::InvalidInput(format!(
                "the prompt has {} tokens; the model's context is {}",
                prompt_ids.len(),
                self.context_length
            )));
        }
        let mut rng = SplitMix64(opts.seed);
        let mut tokens: Vec<u32> = Vec::new();
        let mut text = String::new();

        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let mut past = self.empty_past()?;
        let input: Vec<i64> = prompt_ids.iter().map(|&t| i64::from(t)).collect();
        let mut logits = self.step(&mut session, &input, 0, &mut past)?;
        let prefill = start.elapsed();
        let decode_start = Instant::now();
        let mut past_len = prompt_ids.len();

        let finish = loop {
            penalise_repeats(&mut logits, &tokens, opts.repetition_penalty);
            let next = pick(&logits, opts, &mut rng);
            if self.eos.contains(&next) {
                break FinishReason::Eos;
            }
            tokens.push(next);
            if !opts.stop_strings.is_empty() {
                let so_far = self.detokenize(&tokens)?;
                if let Some(cut) = opts
                    .stop_strings
                    .iter()
                    .filter_map(|s| so_far.find(s.as_str()))
                    .min()
                {
                    text = so_far[..cut].to_string();
                    break FinishReason::StopString;
                }
            }
            if tokens.len() >= opts.max_new_tokens {
                break FinishReason::MaxTokens;
            }
            if past_len + 1 >= self.context_length {
                break FinishReason::ContextFull;
            }
            logits = self.step(&mut session, &[i64::from(next)], past_len, &mut past)?;
            past_len += 1;
        };
        drop(session);
        let decode = decode_start.elapsed();
        if finish != FinishReason::StopString {
            text = self.detokenize(&tokens)?;
        }
        Ok(Generation {
            text,
            tokens,
            prompt_tokens: prompt_ids.len(),
            finish,
            prefill,
            decode,
        })
    }

    fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| ModelsError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    fn detokenize(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| ModelsError::Tokenizer(e.to_string()))
    }

    /// An empty cache: `[1, kv_heads, 0, head_size]` per key and value.
    fn empty_past(&self) -> Result<Vec<DynValue>> {
        self.past_names
            .iter()
            .map(|_| {
                Tensor::<f32>::from_array((
                    [1, self.kv_heads, 0, self.head_size],
                    Vec::<f32>::new(),
                ))
                .map(|t| t.into_dyn())
                .map_err(ModelsError::generator)
            })
            .collect()
    }

    /// Runs `input` after `past_len` cached tokens; replaces `past` with the new cache and returns the last
    /// position's logits.
    fn step(
        &self,
        session: &mut Session,
        input: &[i64],
        past_len: usize,
        past: &mut [DynValue],
    ) -> Result<Vec<f32>> {
        let seq = input.len();
        let total = past_len + seq;
        let tensor = |shape: [usize; 2], data: Vec<i64>| {
            Tensor::from_array((shape, data))
                .map(SessionInputValue::from)
                .map_err(ModelsError::generator)
        };
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> =
            Vec::with_capacity(past.len() + 3);
        inputs.push((
            self.input_ids.as_str().into(),
            tensor([1, seq], input.to_vec())?,
        ));
        inputs.push((
            self.attention_mask.as_str().into(),
            tensor([1, total], vec![1; total])?,
        ));
        if let Some(name) = &self.position_ids {
            let positions = (past_len..total).map(|p| p as i64).collect();
            inputs.push((name.as_str().into(), tensor([1, seq], positions)?));
        }
        for (name, value) in self.past_names.iter().zip(past.iter()) {
            inputs.push((name.as_str().into(), SessionInputValue::from(value)));
        }

        let mut outputs = session.run(inputs).map_err(ModelsError::generator)?;
        let logits = {
            let value = outputs
                .get(&self.logits)
                .ok_or_else(|| ModelsError::generator(format!("no `{}` output", self.logits)))?;
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(ModelsError::generator)?;
            let vocab = shape.last().map_or(0, |&v| v.max(0) as usize);
            if vocab == 0
                || data.len() < vocab
                || (vocab != self.vocab_size && self.vocab_size != 0)
            {
                return Err(ModelsError::generator(format!(
                    "unexpected logits shape {:?} (vocab {})",
                    &shape[..],
                    self.vocab_size
                )));
            }
            data[data.len() - vocab..].to_vec()
        };
        for (slot, name) in past.iter_mut().zip(&self.present_names) {
            *slot = outputs
                .remove(name.as_str())
                .ok_or_else(|| ModelsError::generator(format!("no `{name}` output")))?;
        }
        Ok(logits)
    }
}

/// CTRL-style repetition penalty (as in Hugging Face transformers): the logit of every token
/// already generated is divided by `penalty` when positive and multiplied by it when negative.
/// Small greedy models otherwise loop on a phrase. `penalty <= 1` leaves the logits alone.
fn penalise_repeats(logits: &mut [f32], generated: &[u32], penalty: f32) {
    if penalty <= 1.0 {
        return;
    }
    let mut seen = std::collections::HashSet::with_capacity(generated.len());
    for &t in generated {
        if seen.insert(t)
            && let Some(l) = logits.get_mut(t as usize)
        {
            *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

/// Picks the next token: argmax when `temperature == 0`, else a sample after temperature, top-k and top-p.
fn pick(logits: &[f32], opts: &GenerateOptions, rng: &mut SplitMix64) -> u32 {
    let argmax = |l: &[f32]| triage_core::argmax(l).0 as u32;
    if opts.temperature <= 0.0 {
        return argmax(logits);
    }
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut probs: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, ((l - max) / opts.temperature).exp()))
        .collect();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    if opts.top_k > 0 {
        probs.truncate(opts.top_k);
    }
    let total: f32 = probs.iter().map(|p| p.1).sum();
    if opts.top_p < 1.0 {
        let mut acc = 0.0;
        let keep = probs
            .iter()
            .position(|p| {
                acc += p.1 / total;
                acc >= opts.top_p
            })
            .map_or(probs.len(), |i| i + 1);
        probs.truncate(keep);
    }
    let total: f32 = probs.iter().map(|p| p.1).sum();
    let mut target = rng.next_f32() * total;
    for &(id, p) in &probs {
        if target < p {
            return id;
        }
        target -= p;
    }
    probs.first().map_or_else(|| argmax(logits), |p| p.0)
}

/// A tiny seeded generator (SplitMix64), enough for sampling reproducibly.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_format_matches_the_smollm2_template() {
        let s = Generator::render_chat(&[ChatMessage::user("Hi")]);
        assert_eq!(
            s,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let s =
            Generator::render_chat(&[ChatMessage::system("Be brief."), ChatMessage::user("Hi")]);
        assert_eq!(
            s,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn repetition_penalty_lowers_repeated_tokens() {
        let mut logits = vec![2.0, -1.0, 1.9];
        penalise_repeats(&mut logits, &[0, 1, 0], 1.5);
        assert_eq!(logits, vec![2.0 / 1.5, -1.5, 1.9]);
        let mut same = vec![2.0, -1.0];
        penalise_repeats(&mut same, &[0, 1], 1.0);
        assert_eq!(same, vec![2.0, -1.0]);
    }

    #[test]
    fn greedy_is_argmax_and_sampling_is_seeded() {
        let logits = vec![0.1, 3.0, 0.2, 2.9];
        assert_eq!(
            pick(&logits, &GenerateOptions::default(), &mut SplitMix64(1)),
            1
        );
        let opts = GenerateOptions {
            temperature: 1.0,
            top_k: 2,
            seed: 7,
            ..GenerateOptions::default()
        };
        let draw = |seed| {
            let mut rng = SplitMix64(seed);
            (0..50)
                .map(|_| pick(&logits, &opts, &mut rng))
                .collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert!(
            a.iter().all(|&t| t == 1 || t == 3),
            "top_k = 2 keeps tokens 1 and 3: {a:?}"
        );
        assert!(a.contains(&1) && a.contains(&3));
        let nucleus = GenerateOptions {
            temperature: 1.0,
            top_p: 0.1,
            ..GenerateOptions::default()
        };
        let mut rng = SplitMix64(3);
        assert!((0..20).all(|_| pick(&logits, &nucleus, &mut rng) == 1));
    }
}
