//! The trainer: batches of images and RoIs, every strategy side by side from the same start, on its own
//! thread. Imports data, detector, ohem and eval; never the UI.

pub mod adam;
pub mod batch;
pub mod bootstrap;
pub mod config;
pub mod engine;
pub mod evaluator;
pub mod images;
pub mod learner;
pub mod messages;
pub mod resume;
pub mod suspects;
pub mod thread;

pub use config::{DeviceChoice, LiveSettings, OhemLoss, Strategy, TrainConfig};
pub use engine::Engine;
pub use messages::{Command, Event};
pub use thread::{TrainerHandle, Waker};
