//! SQuAD v1.1 scoring, rule for rule the official `evaluate-v1.1.py`.
//!
//! An answer is first normalised ([`normalize_answer`]); a prediction then scores exact match
//! ([`exact_match`]) when the normalised strings are equal, and token F1 ([`f1`]) from the
//! multiset overlap of their tokens. A question keeps the best score over its reference answers,
//! and [`evaluate`] reports the totals as percentages over every question in the data set, an
//! unanswered question counting 0.
//!
//! Two inputs the official script crashes on are scored instead: an empty data set scores 0
//! (the script divides by zero) and a question with no reference answer scores 0 (the script
//! takes the max of an empty list).

use std::collections::HashMap;

/// The totals over a data set, as [`evaluate`] reports them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SquadScore {
    /// `100 * (questions answered exactly) / questions`.
    pub exact_match: f64,
    /// `100 * (sum of per-question F1) / questions`.
    pub f1: f64,
    /// The number of questions in the data set, each counted once per occurrence.
    pub questions: usize,
    /// Questions with no prediction; each scored 0 in both totals.
    pub missing: usize,
}

/// Normalise an answer as the official script does, in its order: lowercase; drop every ASCII
/// punctuation character (Python's `string.punctuation`, so `_` and `-` go, `—` stays); replace
/// each whole word `a`, `an` or `the` (the regex `\b(a|an|the)\b`) by a space; split on
/// whitespace and join with single spaces.
///
/// A word is a run of alphanumeric characters or `_`, and whitespace is Python's (`\x1c` to
/// `\x1f` included). One known difference: Rust's alphanumeric set (Unicode Alphabetic or
/// Numeric) also holds the vowel signs and other combining marks of scripts such as Devanagari,
/// and circled letters, which Python's `\w` does not; an article touching one of those stays
/// here where Python removes it.
pub fn normalize_answer(s: &str) -> String {
    let lowered = s.to_lowercase();
    let no_punct: String = lowered
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    let no_articles = remove_articles(&no_punct);
    tokens(&no_articles).join(" ")
}

/// Whether a prediction equals a reference answer once both are normalised.
pub fn exact_match(prediction: &str, truth: &str) -> bool {
    normalize_answer(prediction) == normalize_answer(truth)
}

/// Token F1 of a prediction against one reference answer: with `same` the size of the multiset
/// intersection of the normalised tokens (Python's `Counter & Counter`), precision
/// `same / prediction tokens`, recall `same / reference tokens` and F1 `2PR / (P + R)`; 0 when
/// no token is shared (so two answers that both normalise to nothing score F1 0 but exact
/// match 1, as in v1.1).
pub fn f1(prediction: &str, truth: &str) -> f64 {
    let prediction = normalize_answer(prediction);
    let truth = normalize_answer(truth);
    let prediction_tokens = tokens(&prediction);
    let truth_tokens = tokens(&truth);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &prediction_tokens {
        *counts.entry(t).or_insert(0) += 1;
    }
    let mut same = 0usize;
    for t in &truth_tokens {
        if let Some(c) = counts.get_mut(t) {
            if *c > 0 {
                *c -= 1;
                same += 1;
            }
        }
    }
    if same == 0 {
        return 0.0;
    }
    // The script's arithmetic, in its order.
    let precision = same as f64 / prediction_tokens.len() as f64;
    let recall = same as f64 / truth_tokens.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// Exact match against the best of several reference answers; false when there are none.
pub fn max_exact_match<S: AsRef<str>>(prediction: &str, truths: &[S]) -> bool {
    truths.iter().any(|t| exact_match(prediction, t.as_ref()))
}

/// F1 against the best of several reference answers; 0 when there are none.
pub fn max_f1<S: AsRef<str>>(prediction: &str, truths: &[S]) -> f64 {
    truths
        .iter()
        .map(|t| f1(prediction, t.as_ref()))
        .fold(0.0, f64::max)
}

/// Score predictions (question id → answer text) against a data set of `(question id, reference
/// answers)`. Every question of the data set counts, in its order; one without a prediction
/// scores 0 and is counted in [`SquadScore::missing`]; predictions for ids not in the data set
/// are ignored. An empty data set scores 0.
pub fn evaluate(
    questions: &[(String, Vec<String>)],
    predictions: &HashMap<String, String>,
) -> SquadScore {
    let mut exact = 0usize;
    let mut f1_sum = 0.0;
    let mut missing = 0usize;
    for (id, truths) in questions {
        let Some(prediction) = predictions.get(id) else {
            missing += 1;
            continue;
        };
        exact += usize::from(max_exact_match(prediction, truths));
        f1_sum += max_f1(prediction, truths);
    }
    let total = questions.len();
    let percent = |x: f64| {
        if total == 0 {
            0.0
        } else {
            100.0 * x / total as f64
        }
    };
    SquadScore {
        exact_match: percent(exact as f64),
        f1: percent(f1_sum),
        questions: total,
        missing,
    }
}

/// Python's `str.isspace`: Unicode White_Space plus the separators `\x1c` to `\x1f`.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// A character of the regex class `\w`.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Python's `str.split()`: the pieces between runs of whitespace.
fn tokens(s: &str) -> Vec<&str> {
    s.split(is_python_space).filter(|t| !t.is_empty()).collect()
}

/// `re.sub(r'\b(a|an|the)\b', ' ', text)`: a match needs a word boundary on both sides, so it
/// is exactly a whole run of word characters that spells one of the articles.
fn remove_articles(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(first) = rest.chars().next() {
        let word = is_word_char(first);
        let end = rest
            .find(|c: char| is_word_char(c) != word)
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        if word && matches!(run, "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(run);
        }
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn normalisation_follows_the_official_steps() {
        // Lowercase, punctuation out, articles out, whitespace collapsed.
        assert_eq!(normalize_answer("The Eiffel Tower"), "eiffel tower");
        assert_eq!(normalize_answer("eiffel tower!"), "eiffel tower");
        assert_eq!(
            normalize_answer("An apple, a day... keeps THE doctor away!"),
            "apple day keeps doctor away"
        );
        // Articles only as whole words: "theater", "another" and "anna" keep theirs.
        assert_eq!(normalize_answer("the theater"), "theater");
        assert_eq!(normalize_answer("another anna"), "another anna");
        // Punctuation goes before articles: "a-ha" becomes the word "aha", "the_end" "theend".
        assert_eq!(normalize_answer("A-ha"), "aha");
        assert_eq!(normalize_answer("the_end"), "theend");
        // "—" is not ASCII punctuation and not a word character: it stays and bounds words.
        assert_eq!(normalize_answer("the—a"), "—");
        // Python's whitespace, \x1f (unit separator) included; non-ASCII letters lowercased.
        assert_eq!(
            normalize_answer("  Tab\tand\nnew\u{1f}line  "),
            "tab and new line"
        );
        assert_eq!(normalize_answer("ÜBER Straße"), "über straße");
        assert_eq!(normalize_answer("The"), "");
        assert_eq!(normalize_answer(""), "");
    }

    #[test]
    fn exact_match_compares_normalised_text() {
        assert!(exact_match("eiffel tower!", "The Eiffel Tower"));
        assert!(!exact_match("eiffel", "The Eiffel Tower"));
        // Both normalise to the empty string: a match in v1.1.
        assert!(exact_match("", "the"));
    }

    #[test]
    fn f1_counts_shared_tokens() {
        // Prediction tokens [cat, sat, on, mat] (4), reference [cat, on, hot, tin, roof] (5):
        // shared {cat, on} = 2, P = 2/4, R = 2/5, F1 = 2 * 0.5 * 0.4 / 0.9 = 4/9.
        let s = f1("The cat sat on the mat.", "a cat on a hot tin roof");
        assert!(close(s, 4.0 / 9.0), "{s}");
        // Multiset overlap: [new, york, new, york] against [new, new, new] shares
        // min(2, 3) = 2 tokens: P = 2/4, R = 2/3, F1 = (2/3) / (7/6) = 4/7.
        let s = f1("new york new york", "new new new");
        assert!(close(s, 4.0 / 7.0), "{s}");
        // The same text scores 1; no shared token scores 0; empty answers score 0.
        assert!(close(f1("Eiffel Tower", "the eiffel tower"), 1.0));
        assert_eq!(f1("London", "Paris"), 0.0);
        assert_eq!(f1("", "the"), 0.0);
        assert_eq!(f1("Paris", ""), 0.0);
    }

    #[test]
    fn the_best_reference_answer_wins() {
        // "in Paris, France" → [in, paris, france]. Against "Paris": P = 1/3, R = 1,
        // F1 = (2/3) / (4/3) = 0.5. Against "Paris, France": P = 2/3, R = 1,
        // F1 = (4/3) / (5/3) = 0.8. Best 0.8; exact match with neither.
        let truths = ["Paris", "Paris, France"];
        assert!(close(f1("in Paris, France", truths[0]), 0.5));
        assert!(close(max_f1("in Paris, France", &truths), 0.8));
        assert!(!max_exact_match("in Paris, France", &truths));
        assert!(max_exact_match("paris", &truths));
        let none: [&str; 0] = [];
        assert_eq!(max_f1("paris", &none), 0.0);
        assert!(!max_exact_match("paris", &none));
    }

    #[test]
    fn evaluate_totals_over_every_question() {
        // q1: exact (EM 1, F1 1). q2: F1 0.8 as above, EM 0. q3: no prediction (0, missing).
        // q4 has no reference answers (0). A prediction for an unknown id is ignored.
        // EM = 100 * 1/4 = 25; F1 = 100 * (1 + 0.8) / 4 = 45.
        let questions = vec![
            ("q1".to_string(), vec!["The Eiffel Tower".to_string()]),
            (
                "q2".to_string(),
                vec!["Paris".to_string(), "Paris, France".to_string()],
            ),
            ("q3".to_string(), vec!["1889".to_string()]),
            ("q4".to_string(), vec![]),
        ];
        let predictions: HashMap<String, String> = [
            ("q1", "eiffel tower!"),
            ("q2", "in Paris, France"),
            ("q4", "anything"),
            ("unknown", "ignored"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let s = evaluate(&questions, &predictions);
        assert!(close(s.exact_match, 25.0), "{s:?}");
        assert!(close(s.f1, 45.0), "{s:?}");
        assert_eq!((s.questions, s.missing), (4, 1));

        // The same without q4: EM = 100/3, F1 = 100 * 1.8 / 3 = 60.
        let s = evaluate(&questions[..3], &predictions);
        assert!(close(s.exact_match, 100.0 / 3.0), "{s:?}");
        assert!(close(s.f1, 60.0), "{s:?}");
    }

    #[test]
    fn an_empty_data_set_scores_zero() {
        let s = evaluate(&[], &HashMap::new());
        assert_eq!(s, SquadScore::default());
    }
}
