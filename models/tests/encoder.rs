//! The encoder against the real int8 model and Python reference embeddings.

mod common;

use common::{cosine, encoder};

#[derive(serde::Deserialize)]
struct Reference {
    sentences: Vec<Sentence>,
}

#[derive(serde::Deserialize)]
struct Sentence {
    text: String,
    tokens: usize,
    /// The sentence embedded alone.
    embedding: Vec<f32>,
    /// The sentence embedded in one padded batch with the other two.
    batch_embedding: Vec<f32>,
}

/// Python's embeddings from the integer kernel this CPU runs. ONNX Runtime multiplies the int8 model's
/// u8 activations by its s8 weights with VNNI (exact int32 sums) where the CPU has it, and otherwise with
/// vpmaddubsw, which saturates each pair of products at int16: the two kernels' embeddings differ by
/// cosine 0.98-0.995, so each has its own reference (`fixtures/make_minilm_reference.py`).
fn reference() -> Reference {
    let text = if saturating_int8_kernel() {
        include_str!("fixtures/minilm_reference_avx2.json")
    } else {
        include_str!("fixtures/minilm_reference.json")
    };
    serde_json::from_str(text).expect("fixture parses")
}

/// x86-64 without VNNI: ONNX Runtime's u8 x s8 kernel is AVX2's (or AVX-512BW's) saturating one.
fn saturating_int8_kernel() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !(std::arch::is_x86_feature_detected!("avx512vnni")
            || std::arch::is_x86_feature_detected!("avxvnni"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[test]
fn embeddings_match_python_onnxruntime() {
    let reference = reference();
    for s in &reference.sentences {
        assert_eq!(
            encoder().count_tokens(&s.text).expect("tokenises"),
            s.tokens,
            "{}",
            s.text
        );
        let single = encoder().embed_one(&s.text).expect("embeds").to_vec();
        let cos = cosine(&single, &s.embedding);
        assert!(cos > 0.999, "cosine {cos} for {:?} alone", s.text);
        let norm: f32 = single.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
}

#[test]
fn batched_embeddings_match_python_onnxruntime_batch() {
    // Three lengths in one batch: exercises padding and the attention mask. The int8 model quantises
    // activations with one scale per tensor, so a batched row differs slightly from the same text alone
    // (cosine 0.98-0.99); compare with Python's embedding of the same batch.
    let reference = reference();
    let texts: Vec<&str> = reference
        .sentences
        .iter()
        .map(|s| s.text.as_str())
        .collect();
    let batch = encoder().embed(&texts).expect("embeds");
    assert_eq!(batch.dim(), (3, 384));
    for (i, s) in reference.sentences.iter().enumerate() {
        let row = batch.row(i).to_vec();
        let cos = cosine(&row, &s.batch_embedding);
        assert!(cos > 0.999, "cosine {cos} for {:?} in the batch", s.text);
        assert!(
            cosine(&row, &s.embedding) > 0.97,
            "batched and single runs differ too much"
        );
    }
}

#[test]
fn similar_messages_are_closer_than_unrelated_ones() {
    let e = encoder()
        .embed(&[
            "my card was declined",
            "the shop refused my card payment",
            "what's the weather tomorrow?",
        ])
        .expect("embeds");
    let (a, b, c) = (e.row(0).to_vec(), e.row(1).to_vec(), e.row(2).to_vec());
    assert!(
        cosine(&a, &b) > cosine(&a, &c) + 0.2,
        "{} vs {}",
        cosine(&a, &b),
        cosine(&a, &c)
    );
}

#[test]
fn edge_cases_empty_batch_empty_text_and_long_text() {
    assert_eq!(encoder().embed(&[]).expect("empty batch").dim(), (0, 384));
    let empty = encoder().embed_one("").expect("empty text embeds");
    assert!(empty.iter().all(|v| v.is_finite()));
    let long = "word ".repeat(2000);
    assert_eq!(
        encoder().count_tokens(&long).expect("tokenises"),
        256,
        "truncated at 256"
    );
    let v = encoder().embed_one(&long).expect("long text embeds");
    assert!(v.iter().all(|v| v.is_finite()));
}

#[test]
fn usable_from_several_threads() {
    let reference = reference();
    let expected = reference.sentences[0].embedding.clone();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..5 {
                    let v = encoder()
                        .embed_one(&reference.sentences[0].text)
                        .expect("embeds");
                    assert!(cosine(&v.to_vec(), &expected) > 0.999);
                }
            });
        }
    });
}

/// `device = "cuda"` with the CPU-only runtime: a warning, then the CPU.
#[test]
fn cuda_device_falls_back_to_cpu() {
    let cfg = triage_models::ModelsConfig {
        device: triage_models::Device::Cuda,
        ..common::config()
    };
    let enc = common::installed(
        "the encoder on device = cuda",
        triage_models::Encoder::from_config(&cfg),
    );
    assert_eq!(
        enc.embed_one("hello").expect("embeds on the CPU").len(),
        384
    );
}
