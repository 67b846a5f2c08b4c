//! The weight formats score alike: a model with many labels, scored with exact f32 weights and
//! with int8 ones ([`WeightFormat`]), on texts it was and was not trained on.

use triage_classifier::{Example, Model, NoProgress, Scratch, TrainConfig, WeightFormat};

/// 24 labels, each with its own vocabulary plus shared words, so the weights are not trivial.
fn many_label_model() -> (Model, Vec<String>) {
    let shared = [
        "please", "help", "my", "account", "the", "order", "today", "again",
    ];
    let mut data = Vec::new();
    let mut held_out = Vec::new();
    for label in 0..24 {
        for i in 0..12 {
            let text = format!(
                "{} topic{label} word{}x{label} {} thing{} {}",
                shared[(label + i) % shared.len()],
                i % 5,
                shared[(label * 3 + i) % shared.len()],
                (label + i) % 7,
                if i % 2 == 0 { "now" } else { "soon" }
            );
            if i < 10 {
                data.push(Example {
                    id: None,
                    text,
                    label: format!("intent_{label}"),
                });
            } else {
                held_out.push(text);
            }
        }
    }
    held_out.extend(
        [
            "please help me",
            "topic3 and topic5",
            "",
            "zzz unknown words",
        ]
        .map(String::from),
    );
    let mut config = TrainConfig::default();
    config.tfidf.min_df = 1;
    let model = Model::train(&data, &config, &mut NoProgress).expect("training");
    let train_texts = data.into_iter().map(|e| e.text);
    (model, train_texts.chain(held_out).collect())
}

#[test]
fn int8_weights_score_like_f32_weights() {
    let (mut model, texts) = many_label_model();
    assert_eq!(model.labels().len(), 24);
    assert_eq!(
        model.weight_format(),
        WeightFormat::Int8,
        "the default from 16 labels"
    );
    let mut s = Scratch::default();
    let score = |m: &Model, s: &mut Scratch| -> Vec<Vec<f32>> {
        texts
            .iter()
            .map(|t| {
                let mut p = Vec::new();
                m.predict_into(t, s, &mut p);
                p
            })
            .collect()
    };
    let int8 = score(&model, &mut s);
    model.set_weight_format(WeightFormat::F32);
    assert_eq!(model.weight_format(), WeightFormat::F32);
    let f32s = score(&model, &mut s);
    let mut same_top = 0;
    let mut max_diff = 0.0f32;
    for (a, b) in int8.iter().zip(&f32s) {
        assert_eq!(a.len(), 24);
        assert!((a.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        same_top += usize::from(argmax(a) == argmax(b));
        for (x, y) in a.iter().zip(b) {
            max_diff = max_diff.max((x - y).abs());
        }
    }
    assert!(max_diff < 0.02, "largest probability difference {max_diff}");
    assert!(
        same_top * 100 >= texts.len() * 98,
        "{same_top} of {} top labels agree",
        texts.len()
    );
    // The model file is the same whatever the format: it stores f32.
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.triage"), dir.path().join("b.triage"));
    model.save(&a).unwrap();
    model.set_weight_format(WeightFormat::Int8);
    model.save(&b).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(Model::load(&a).unwrap().weight_format(), WeightFormat::Int8);
}

#[test]
fn few_labels_stay_exact() {
    let m = Model::default_model();
    assert_eq!(m.labels().len(), 4);
    assert_eq!(m.weight_format(), WeightFormat::F32);
}

fn argmax(p: &[f32]) -> usize {
    (0..p.len()).fold(0, |b, i| if p[i] > p[b] { i } else { b })
}

/// 4-bit weights (the default from 128 labels) against f32 on the same model: what they lose is
/// a rounding of each weight to a sixteenth of its row's range.
#[test]
fn int4_weights_score_close_to_f32_weights() {
    let (mut model, texts) = many_label_model();
    let mut s = Scratch::default();
    let mut score = |m: &Model| -> Vec<Vec<f32>> {
        texts
            .iter()
            .map(|t| {
                let mut p = Vec::new();
                m.predict_into(t, &mut s, &mut p);
                p
            })
            .collect()
    };
    model.set_weight_format(WeightFormat::Int4);
    assert_eq!(model.weight_format(), WeightFormat::Int4);
    let int4 = score(&model);
    model.set_weight_format(WeightFormat::F32);
    let f32s = score(&model);
    let mut same_top = 0;
    let mut max_diff = 0.0f32;
    for (a, b) in int4.iter().zip(&f32s) {
        assert_eq!(a.len(), 24);
        assert!((a.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        same_top += usize::from(argmax(a) == argmax(b));
        for (x, y) in a.iter().zip(b) {
            max_diff = max_diff.max((x - y).abs());
        }
    }
    eprintln!(
        "int4 against f32: {same_top} of {} top labels, largest difference {max_diff}",
        texts.len()
    );
    assert!(max_diff < 0.05, "largest probability difference {max_diff}");
    assert!(
        same_top * 100 >= texts.len() * 98,
        "{same_top} of {} top labels agree",
        texts.len()
    );
}
