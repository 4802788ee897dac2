//! Small datasets built in memory for engine tests: the real trainer on real pixels, in seconds.

use std::path::PathBuf;
use std::sync::Arc;

use image::{Rgb, RgbImage};
use ohem_studio::data::{Dataset, GtBox, ImageRecord, Layout};
use ohem_studio::geometry::Rect;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Images of `width × height` with 0–2 red "cars" (a body with two dark wheels) and a red box
/// without wheels as a distractor, on a noisy grey background.
pub fn cars_dataset(train: usize, val: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut make = |n: usize, split: &str| -> Vec<ImageRecord> {
        (0..n).map(|i| car_image(&mut rng, &format!("{split}_{i}.png"))).collect()
    };
    let train = make(train, "train");
    let val = make(val, "val");
    Dataset {
        root: PathBuf::from("memory"),
        layout: Layout::Yolo,
        class_names: vec!["car".into()],
        train,
        val,
        positive_crops: Vec::new(),
    }
}

fn car_image(rng: &mut ChaCha8Rng, name: &str) -> ImageRecord {
    let (w, h) = (160u32, 120u32);
    let mut img = RgbImage::from_fn(w, h, |_, _| {
        let v = rng.random_range(90u8..140);
        Rgb([v, v, v])
    });
    let mut boxes = Vec::new();
    let cars = rng.random_range(0..=2);
    for c in 0..cars {
        let (cw, ch) = (40u32, 18u32);
        let x = rng.random_range(2..w - cw - 2);
        let y = if c == 0 { rng.random_range(5..45) } else { rng.random_range(65..h - ch - 2) };
        fill(&mut img, x, y, cw, ch - 6, [200, 30, 30]);
        fill(&mut img, x + 4, y + ch - 7, 8, 7, [20, 20, 20]);
        fill(&mut img, x + cw - 12, y + ch - 7, 8, 7, [20, 20, 20]);
        boxes.push(GtBox {
            class_id: 0,
            rect: Rect::new(x as f32, y as f32, (x + cw) as f32, (y + ch) as f32),
            difficult: false,
        });
    }
    // A distractor: car-coloured, no wheels, somewhere free.
    if rng.random_bool(0.7) {
        let x = rng.random_range(2..w - 42);
        let y = rng.random_range(2..h - 14);
        let candidate = Rect::new(x as f32, y as f32, x as f32 + 40.0, y as f32 + 12.0);
        if boxes.iter().all(|b| b.rect.iou(&candidate) == 0.0 && b.rect.intersection_area(&candidate) == 0.0) {
            fill(&mut img, x, y, 40, 12, [200, 30, 30]);
        }
    }
    ImageRecord {
        path: PathBuf::from(name),
        width: w,
        height: h,
        boxes,
        pixels: Arc::new(img),
        scale: 1.0,
    }
}

fn fill(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, rgb: [u8; 3]) {
    for yy in y..(y + h).min(img.height()) {
        for xx in x..(x + w).min(img.width()) {
            img.put_pixel(xx, yy, Rgb(rgb));
        }
    }
}
