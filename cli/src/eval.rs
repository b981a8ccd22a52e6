//! `sfumato eval squad|coco`: the accuracy columns of the zoo's table, scored by the datasets'
//! official rules (`sfumato_zoo::eval`) from a user's dataset files and predictions.

use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub(crate) enum EvalCommand {
    /// SQuAD v1.1 exact match and F1 (the official evaluate-v1.1.py rules).
    Squad {
        /// The dataset (dev-v1.1.json).
        dataset: PathBuf,
        /// Predictions: a JSON object {question id: answer text}.
        predictions: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// COCO detection mAP@0.5:0.95, mAP@0.5, mAP@0.75 and by area (pycocotools' rules).
    Coco {
        /// The annotations (instances_val2017.json).
        annotations: PathBuf,
        /// Results: [{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...].
        results: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn eval(c: &EvalCommand) -> Result<()> {
    match c {
        EvalCommand::Squad {
            dataset,
            predictions,
            json,
        } => {
            let s = sfumato_zoo::eval::files::squad_files(dataset, predictions)?;
            if *json {
                println!(
                    "{}",
                    serde_json::json!({"exact_match": s.exact_match, "f1": s.f1, "questions": s.questions, "missing": s.missing})
                );
            } else {
                println!(
                    "exact match {:.2}  F1 {:.2}  ({} questions, {} without a prediction)",
                    s.exact_match, s.f1, s.questions, s.missing
                );
            }
        }
        EvalCommand::Coco {
            annotations,
            results,
            json,
        } => {
            let s = sfumato_zoo::eval::files::coco_files(annotations, results)?;
            if *json {
                println!(
                    "{}",
                    serde_json::json!({"map": s.map, "map50": s.map50, "map75": s.map75, "map_small": s.map_small, "map_medium": s.map_medium, "map_large": s.map_large})
                );
            } else {
                println!(
                    "mAP@0.5:0.95 {:.3}  mAP@0.5 {:.3}  mAP@0.75 {:.3}",
                    s.map, s.map50, s.map75
                );
                println!(
                    "small {:.3}  medium {:.3}  large {:.3}  (-1: no ground truth of that size)",
                    s.map_small, s.map_medium, s.map_large
                );
            }
        }
    }
    Ok(())
}
