//! The evaluators' inputs in the datasets' own file formats: SQuAD v1.1's `dev-v1.1.json` with a
//! predictions file `{question id: answer text}`, and COCO's `instances_*.json` with a results
//! file `[{"image_id", "category_id", "bbox", "score"}, ...]`.

use super::{coco, squad};
use crate::error::{Result, ZooError};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| ZooError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ZooError::Config {
        path: path.display().to_string(),
        msg: format!("not a {what}: {e}"),
    })
}

#[derive(Deserialize)]
struct SquadFile {
    data: Vec<SquadArticle>,
}
#[derive(Deserialize)]
struct SquadArticle {
    paragraphs: Vec<SquadParagraph>,
}
#[derive(Deserialize)]
struct SquadParagraph {
    qas: Vec<SquadQa>,
}
#[derive(Deserialize)]
struct SquadQa {
    id: String,
    answers: Vec<SquadAnswer>,
}
#[derive(Deserialize)]
struct SquadAnswer {
    text: String,
}

/// Score a SQuAD v1.1 predictions file against the dataset file.
pub fn squad_files(dataset: &Path, predictions: &Path) -> Result<squad::SquadScore> {
    let data: SquadFile = read_json(dataset, "SQuAD v1.1 dataset (data/paragraphs/qas/answers)")?;
    let preds: HashMap<String, String> =
        read_json(predictions, "predictions file ({question id: answer})")?;
    let questions: Vec<(String, Vec<String>)> = data
        .data
        .into_iter()
        .flat_map(|a| a.paragraphs)
        .flat_map(|p| p.qas)
        .map(|q| (q.id, q.answers.into_iter().map(|a| a.text).collect()))
        .collect();
    Ok(squad::evaluate(&questions, &preds))
}

#[derive(Deserialize)]
struct CocoFile {
    annotations: Vec<CocoAnnotation>,
}
#[derive(Deserialize)]
struct CocoAnnotation {
    image_id: u64,
    category_id: u64,
    bbox: [f64; 4],
    area: f64,
    #[serde(default)]
    iscrowd: u8,
}
#[derive(Deserialize)]
struct CocoResult {
    image_id: u64,
    category_id: u64,
    bbox: [f64; 4],
    score: f64,
}

/// Score a COCO results file against an annotations file (bbox).
pub fn coco_files(annotations: &Path, results: &Path) -> Result<coco::CocoScore> {
    let gt: CocoFile = read_json(annotations, "COCO annotations file (annotations: [...])")?;
    let dets: Vec<CocoResult> = read_json(
        results,
        "COCO results file ([{image_id, category_id, bbox, score}])",
    )?;
    let gt: Vec<coco::GroundTruth> = gt
        .annotations
        .into_iter()
        .map(|a| coco::GroundTruth {
            image_id: a.image_id,
            category_id: a.category_id,
            bbox: a.bbox,
            area: a.area,
            iscrowd: a.iscrowd != 0,
        })
        .collect();
    let dets: Vec<coco::Detection> = dets
        .into_iter()
        .map(|d| coco::Detection {
            image_id: d.image_id,
            category_id: d.category_id,
            bbox: d.bbox,
            score: d.score,
        })
        .collect();
    Ok(coco::evaluate(&gt, &dets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("sfumato-eval-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Two questions: one exact ("Denver Broncos" against "Denver Broncos"), one with half its
    /// tokens ("the Carolina" against "Carolina Panthers": normalised "carolina" vs "carolina
    /// panthers", precision 1, recall 1/2, F1 2/3): EM 50, F1 (1 + 2/3) / 2 = 83.33.
    #[test]
    fn squad_files_score_by_hand() {
        let data = write(
            "squad.json",
            r#"{"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "c", "qas": [
                {"id": "q1", "question": "?", "answers": [{"answer_start": 0, "text": "Denver Broncos"}]},
                {"id": "q2", "question": "?", "answers": [{"answer_start": 0, "text": "Carolina Panthers"}]}]}]}]}"#,
        );
        let preds = write(
            "preds.json",
            r#"{"q1": "Denver Broncos", "q2": "the Carolina"}"#,
        );
        let s = squad_files(&data, &preds).unwrap();
        assert_eq!(s.exact_match, 50.0);
        assert!((s.f1 - 250.0 / 3.0).abs() < 1e-9, "{}", s.f1);
        let bad = write("bad.json", "[1, 2]");
        let e = squad_files(&bad, &preds).unwrap_err().to_string();
        assert!(e.contains("not a SQuAD v1.1 dataset"), "{e}");
    }

    /// One object found exactly, one missed: recall reaches 1/2 at precision 1, so AP at every
    /// threshold is 51/101 (recall points 0..=0.5).
    #[test]
    fn coco_files_score_by_hand() {
        let ann = write(
            "ann.json",
            r#"{"images": [{"id": 1}], "annotations": [
                {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 50, 50], "area": 2500, "iscrowd": 0},
                {"id": 2, "image_id": 1, "category_id": 3, "bbox": [200, 200, 50, 50], "area": 2500, "iscrowd": 0}]}"#,
        );
        let res = write(
            "res.json",
            r#"[{"image_id": 1, "category_id": 3, "bbox": [10, 10, 50, 50], "score": 0.9}]"#,
        );
        let s = coco_files(&ann, &res).unwrap();
        assert!((s.map50 - 51.0 / 101.0).abs() < 1e-6, "{s:?}");
        assert!((s.map - 51.0 / 101.0).abs() < 1e-6, "{s:?}");
    }
}
