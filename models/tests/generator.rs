//! The generator against the real SmolLM2 int4 model.

mod common;

use common::generator;
use triage_models::{ChatMessage, FinishReason, GenerateOptions};

fn greedy(n: usize) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: n,
        ..GenerateOptions::default()
    }
}

#[test]
fn greedy_decoding_is_deterministic_and_sensible() {
    let messages = [ChatMessage::user(
        "What is the capital of France? Answer in one sentence.",
    )];
    let a = generator().chat(&messages, &greedy(24)).expect("generates");
    let b = generator().chat(&messages, &greedy(24)).expect("generates");
    assert_eq!(a.tokens, b.tokens, "greedy decoding must repeat exactly");
    assert_eq!(a.text, b.text);
    assert!(
        !a.tokens.is_empty() && !a.text.trim().is_empty(),
        "empty reply: {a:?}"
    );
    assert!(a.text.contains("Paris"), "unexpected reply: {:?}", a.text);
    assert!(
        a.prompt_tokens > 20,
        "the chat template adds a system prompt"
    );
    assert!(matches!(
        a.finish,
        FinishReason::Eos | FinishReason::MaxTokens
    ));
    assert!(a.tokens.len() <= 24);
}

#[test]
fn max_tokens_and_stop_strings_end_generation() {
    let messages = [ChatMessage::user(
        "Count from 1 to 20, separated by commas.",
    )];
    let short = generator().chat(&messages, &greedy(5)).expect("generates");
    assert_eq!(short.finish, FinishReason::MaxTokens);
    assert_eq!(short.tokens.len(), 5);

    let opts = GenerateOptions {
        stop_strings: vec!["5".into()],
        ..greedy(48)
    };
    let stopped = generator().chat(&messages, &opts).expect("generates");
    assert_eq!(stopped.finish, FinishReason::StopString, "{stopped:?}");
    assert!(
        !stopped.text.contains('5'),
        "text is cut before the stop string: {:?}",
        stopped.text
    );
    assert!(stopped.text.contains('4'), "{:?}", stopped.text);
}

#[test]
fn sampling_is_reproducible_per_seed() {
    let messages = [ChatMessage::user("Write a short greeting for a customer.")];
    let opts = |seed| GenerateOptions {
        temperature: 0.8,
        top_p: 0.9,
        seed,
        ..greedy(16)
    };
    let a = generator().chat(&messages, &opts(1)).expect("generates");
    let b = generator().chat(&messages, &opts(1)).expect("generates");
    assert_eq!(a.tokens, b.tokens);
    let others: Vec<_> = (2..6)
        .map(|s| {
            generator()
                .chat(&messages, &opts(s))
                .expect("generates")
                .tokens
        })
        .collect();
    assert!(
        others.iter().any(|t| *t != a.tokens),
        "different seeds should differ at least once"
    );
}

#[test]
fn bad_options_are_errors_not_panics() {
    let messages = [ChatMessage::user("Hi")];
    let bad = GenerateOptions {
        temperature: -1.0,
        ..GenerateOptions::default()
    };
    assert!(generator().chat(&messages, &bad).is_err());
    assert!(
        generator()
            .generate("", &GenerateOptions::default())
            .is_err()
    );
}
