//! What `detect` writes: detections in COCO's results format.

use serde::Serialize;

/// One row of COCO's results format, with the file name added for people.
#[derive(Debug, Serialize)]
pub struct CocoResult {
    pub image_id: u64,
    pub file_name: String,
    pub category_id: u64,
    pub category_name: String,
    /// `[x, y, width, height]` in the image's pixels.
    pub bbox: [f32; 4],
    pub score: f32,
}
