//! ohem-studio: train a small object detector with Online Hard Example Mining and watch,
//! batch by batch, which examples it picks.
//!
//! Layering (see ARCHITECTURE.md and each module's doc): `data`, `eval` and `ohem` are plain
//! Rust; `detector` and `train` own every tensor; `ui` draws plain values sent by the trainer
//! and never touches tch; `cli` runs the same engine headless.

pub mod charts;
pub mod cli;
pub mod data;
pub mod detector;
pub mod eval;
pub mod files;
pub mod geometry;
pub mod ohem;
pub mod run;
pub mod train;
pub mod ui;
