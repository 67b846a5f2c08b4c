//! Classification heads on real embeddings.

mod common;

use common::encoder;
use triage_models::{Head, HeadKind, TrainOptions};

const LABELS: [&str; 3] = ["card_declined", "delivery", "refund"];

const TRAIN: [(&str, usize); 12] = [
    ("my card was declined at the till", 0),
    ("why did my card payment get rejected?", 0),
    ("the shop said my card doesn't work", 0),
    ("payment with my debit card failed", 0),
    ("where is my parcel?", 1),
    ("my order still hasn't arrived", 1),
    ("when will the package be delivered?", 1),
    ("tracking says the courier lost my delivery", 1),
    ("I want my money back for this purchase", 2),
    ("how do I get a refund?", 2),
    ("please return the amount you charged me", 2),
    ("can I return this item and be reimbursed?", 2),
];

const HELD_OUT: [(&str, usize); 6] = [
    ("the cashier told me my card was refused", 0),
    ("card transaction denied, what happened?", 0),
    ("my package is late, has it been shipped?", 1),
    ("the delivery never showed up", 1),
    ("I'd like a refund for my order please", 2),
    ("give me my money back", 2),
];

#[test]
fn logistic_head_predicts_held_out_paraphrases() {
    let texts: Vec<&str> = TRAIN.iter().map(|t| t.0).collect();
    let y: Vec<usize> = TRAIN.iter().map(|t| t.1).collect();
    let x = encoder().embed(&texts).expect("embeds");
    let head = Head::train(&x, &y, &LABELS, &TrainOptions::default()).expect("trains");
    assert_eq!(head.kind(), HeadKind::Logistic);
    assert_eq!(head.labels(), LABELS);

    let test: Vec<&str> = HELD_OUT.iter().map(|t| t.0).collect();
    let xt = encoder().embed(&test).expect("embeds");
    let p = head.predict_proba(&xt).expect("predicts");
    assert_eq!(p.dim(), (6, 3));
    for (i, (text, want)) in HELD_OUT.iter().enumerate() {
        let row = p.row(i);
        let got = triage_core::argmax(&row.to_vec()).0;
        assert_eq!(LABELS[got], LABELS[*want], "{text:?}: {row:?}");
        assert!((row.sum() - 1.0).abs() < 1e-4);
    }

    // Save and load give the same probabilities.
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("head.json");
    head.save(&path).expect("saves");
    let back = Head::load(&path).expect("loads");
    let p2 = back.predict_proba(&xt).expect("predicts");
    assert!((&p - &p2).iter().all(|d| d.abs() < 1e-6));
}

#[test]
fn zero_shot_head_predicts_from_label_descriptions() {
    let head = Head::zero_shot_from_descriptions(
        encoder(),
        &[
            ("card_declined", "my card payment was declined"),
            ("delivery", "where is my parcel delivery"),
            ("refund", "I want a refund, give me my money back"),
        ],
        0.05,
    )
    .expect("builds");
    assert_eq!(head.kind(), HeadKind::ZeroShot);
    let test: Vec<&str> = HELD_OUT.iter().map(|t| t.0).collect();
    let pred = head
        .predict(&encoder().embed(&test).expect("embeds"))
        .expect("predicts");
    let want: Vec<usize> = HELD_OUT.iter().map(|t| t.1).collect();
    let correct = pred.iter().zip(&want).filter(|(a, b)| a == b).count();
    assert!(correct >= 5, "zero-shot got {correct}/6: {pred:?}");
    let back = Head::from_json(&head.to_json().expect("json")).expect("parses");
    assert_eq!(back, head);
}
