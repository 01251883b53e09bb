//! Evaluation (filled in by the evaluation work).
