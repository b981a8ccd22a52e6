//! Task metrics computed exactly as the reference scripts compute them, so a model's numbers
//! can be compared with published ones: pure functions of predictions and references, no
//! device; [`files`] reads them from the datasets' own JSON formats.
//!
//! - [`squad`]: SQuAD v1.1 exact match and F1 (the official `evaluate-v1.1.py`).
//! - [`coco`]: COCO box detection AP — mAP@[.5:.95], AP50, AP75 and AP by object size
//!   (pycocotools' `COCOeval`).

pub mod coco;
pub mod files;
pub mod squad;
