//! Writes `sample_data/`: a small synthetic car-detection dataset in the YOLO layout, so that
//! ohem-studio can be tried (and tested) without downloading anything.
//!
//! ```text
//! cargo run --release --example make_sample_data -- --seed 7 --out sample_data
//! ```
//!
//! Side-view cars on cluttered street scenes, with hard negatives that share a car's parts:
//! car-coloured boxes, wheel pairs without a body, window strips, dark shadows, and cars cut by
//! the image edge. The same seed always gives byte-identical files: one ChaCha8 stream per
//! image, integer or exactly-rounded float arithmetic only (no trigonometry), no hash-map order,
//! no clock.

use std::fmt::Write as _;
use std::path::Path;

use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const IMAGE_WIDTH: u32 = 320;
pub const IMAGE_HEIGHT: u32 = 240;
/// A car cut by the image edge is labelled (with its box clipped to the image) when at least
/// this share of its box is visible, and left unlabelled otherwise. Cut cars are drawn well
/// away from the threshold on either side so that no label is borderline.
pub const MIN_VISIBLE_SHARE: f32 = 0.6;
const JPEG_QUALITY: u8 = 85;

const CAR_COLOURS: [[u8; 3]; 9] = [
    [178, 34, 34],
    [30, 60, 150],
    [235, 235, 230],
    [170, 172, 178],
    [35, 35, 40],
    [230, 190, 40],
    [40, 110, 60],
    [20, 30, 70],
    [200, 90, 30],
];

/// What [`generate`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GenerateSummary {
    pub images: usize,
    /// Images with no labelled car (written without a label file).
    pub negative_images: usize,
    pub boxes: usize,
}

/// Writes `data.yaml`, `images/{train,val}/*.jpg`, `labels/{train,val}/*.txt` and `README.md`
/// into `out_dir`, replacing any `images/` and `labels/` already there.
pub fn generate(
    seed: u64,
    out_dir: &Path,
    train_count: usize,
    val_count: usize,
) -> std::io::Result<GenerateSummary> {
    for owned in ["images", "labels"] {
        let dir = out_dir.join(owned);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
    }
    let mut summary = GenerateSummary::default();
    for (split_index, (split, count)) in [("train", train_count), ("val", val_count)]
        .into_iter()
        .enumerate()
    {
        let image_dir = out_dir.join("images").join(split);
        let label_dir = out_dir.join("labels").join(split);
        std::fs::create_dir_all(&image_dir)?;
        std::fs::create_dir_all(&label_dir)?;
        for index in 0..count {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            // One stream per image: an image does not change when the counts do.
            rng.set_stream(((split_index as u64) << 32) | index as u64);
            let (image, boxes) = draw_scene(&mut rng);
            let stem = format!("{split}_{index:04}");
            write_jpeg(&image, &image_dir.join(format!("{stem}.jpg")))?;
            summary.images += 1;
            if boxes.is_empty() {
                summary.negative_images += 1;
                continue;
            }
            let mut text = String::new();
            for b in &boxes {
                let (w, h) = (IMAGE_WIDTH as f32, IMAGE_HEIGHT as f32);
                let _ = writeln!(
                    text,
                    "0 {:.6} {:.6} {:.6} {:.6}",
                    (b.x0 + b.x1) as f32 / 2.0 / w,
                    (b.y0 + b.y1) as f32 / 2.0 / h,
                    (b.x1 - b.x0) as f32 / w,
                    (b.y1 - b.y0) as f32 / h,
                );
            }
            std::fs::write(label_dir.join(format!("{stem}.txt")), text)?;
            summary.boxes += boxes.len();
        }
    }
    std::fs::write(
        out_dir.join("data.yaml"),
        format!(
            "# Synthetic side-view cars, made by examples/make_sample_data.rs (seed {seed}).\n\
             path: .\ntrain: images/train\nval: images/val\nnames: [car]\n"
        ),
    )?;
    std::fs::write(
        out_dir.join("README.md"),
        readme(seed, train_count, val_count),
    )?;
    Ok(summary)
}

fn readme(seed: u64, train_count: usize, val_count: usize) -> String {
    format!(
        "# sample_data: synthetic cars\n\n\
         A small car-detection dataset in the YOLO layout, drawn by a program so that ohem-studio \
         can be tried without downloading anything: {train_count} training and {val_count} \
         validation images of {IMAGE_WIDTH}×{IMAGE_HEIGHT} pixels, one class (`car`).\n\n\
         Each image is a street scene (sky, buildings, pavement, road, noise) with 0–3 side-view \
         cars 50–130 pixels wide. Boxes are tight around each car's pixels, wheels included. \
         About one image in five has no labelled car and no label file. Most images also hold \
         hard negatives: car-coloured boxes, wheel pairs without a body, window strips, dark \
         shadows. A car cut by the image edge is labelled, with its box clipped to the image, when \
         at least {:.0}% of it is visible, and left unlabelled otherwise.\n\n\
         Regenerate it (byte-identical output for the same seed) with:\n\n\
         ```\ncargo run --release --example make_sample_data -- --seed {seed} --out sample_data\n```\n",
        MIN_VISIBLE_SHARE * 100.0
    )
}

fn write_jpeg(image: &RgbImage, path: &Path) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY)
        .encode_image(image)
        .map_err(std::io::Error::other)?;
    std::fs::write(path, bytes)
}

/// A box in whole pixels, `x1`/`y1` exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelBox {
    pub x0: i32,
    pub y0: i32,
    pub x1: i32,
    pub y1: i32,
}

impl PixelBox {
    /// A `width × height` box whose left edge is at `x` and bottom edge at `bottom`.
    fn standing(x: i32, bottom: i32, width: i32, height: i32) -> Self {
        Self {
            x0: x,
            y0: bottom - height,
            x1: x + width,
            y1: bottom,
        }
    }

    fn area(&self) -> i64 {
        i64::from((self.x1 - self.x0).max(0)) * i64::from((self.y1 - self.y0).max(0))
    }

    fn overlaps(&self, other: &PixelBox, margin: i32) -> bool {
        self.x0 - margin < other.x1
            && other.x0 - margin < self.x1
            && self.y0 - margin < other.y1
            && other.y0 - margin < self.y1
    }

    fn clipped(&self) -> PixelBox {
        PixelBox {
            x0: self.x0.clamp(0, IMAGE_WIDTH as i32),
            y0: self.y0.clamp(0, IMAGE_HEIGHT as i32),
            x1: self.x1.clamp(0, IMAGE_WIDTH as i32),
            y1: self.y1.clamp(0, IMAGE_HEIGHT as i32),
        }
    }
}

/// An image that records the extent of what is painted on it, on or off the image, so that
/// a car's box is exactly the pixels drawn for it.
struct Canvas<'a> {
    image: &'a mut RgbImage,
    painted: Option<PixelBox>,
}

impl Canvas<'_> {
    fn put(&mut self, x: i32, y: i32, colour: [u8; 3]) {
        self.painted = Some(match self.painted {
            None => PixelBox {
                x0: x,
                y0: y,
                x1: x + 1,
                y1: y + 1,
            },
            Some(b) => PixelBox {
                x0: b.x0.min(x),
                y0: b.y0.min(y),
                x1: b.x1.max(x + 1),
                y1: b.y1.max(y + 1),
            },
        });
        if x >= 0 && y >= 0 && (x as u32) < self.image.width() && (y as u32) < self.image.height() {
            self.image.put_pixel(x as u32, y as u32, Rgb(colour));
        }
    }

    fn rect(&mut self, x0: i32, y0: i32, x1: i32, y1: i32, colour: [u8; 3]) {
        for y in y0..y1 {
            for x in x0..x1 {
                self.put(x, y, colour);
            }
        }
    }

    /// Filled ellipse centred on `(cx, cy)` with radii `rx`, `ry`, tested at pixel centres.
    fn ellipse(&mut self, cx: f32, cy: f32, rx: f32, ry: f32, colour: [u8; 3]) {
        let (x0, x1) = ((cx - rx).floor() as i32, (cx + rx).ceil() as i32);
        let (y0, y1) = ((cy - ry).floor() as i32, (cy + ry).ceil() as i32);
        for y in y0..y1 {
            for x in x0..x1 {
                let dx = (x as f32 + 0.5 - cx) / rx;
                let dy = (y as f32 + 0.5 - cy) / ry;
                if dx * dx + dy * dy <= 1.0 {
                    self.put(x, y, colour);
                }
            }
        }
    }

    /// Rectangle with corners rounded by `radius`.
    fn rounded_rect(&mut self, x0: i32, y0: i32, x1: i32, y1: i32, radius: f32, colour: [u8; 3]) {
        for y in y0..y1 {
            for x in x0..x1 {
                let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                let cx = px.clamp(x0 as f32 + radius, x1 as f32 - radius);
                let cy = py.clamp(y0 as f32 + radius, y1 as f32 - radius);
                let (dx, dy) = (px - cx, py - cy);
                if dx * dx + dy * dy <= radius * radius {
                    self.put(x, y, colour);
                }
            }
        }
    }

    /// Trapezoid between rows `y0..y1`, spanning `top` columns on the first row and `bottom`
    /// columns on the last.
    fn trapezoid(
        &mut self,
        y0: i32,
        y1: i32,
        top: (f32, f32),
        bottom: (f32, f32),
        colour: [u8; 3],
    ) {
        let rows = (y1 - y0).max(1) as f32;
        for y in y0..y1 {
            let t = (y - y0) as f32 / rows;
            let left = top.0 + (bottom.0 - top.0) * t;
            let right = top.1 + (bottom.1 - top.1) * t;
            for x in left.round() as i32..right.round() as i32 {
                self.put(x, y, colour);
            }
        }
    }
}

fn shade(colour: [u8; 3], factor: f32) -> [u8; 3] {
    colour.map(|c| (c as f32 * factor).clamp(0.0, 255.0) as u8)
}

fn random_colour(rng: &mut ChaCha8Rng) -> [u8; 3] {
    CAR_COLOURS[rng.random_range(0..CAR_COLOURS.len())]
}

/// Draws a side-view car whose box is `x..x+width`, `y..y+height` and returns the pixels it
/// painted (also those off the image).
fn draw_car(
    image: &mut RgbImage,
    x: i32,
    y: i32,
    width: i32,
    height: i32,
    rng: &mut ChaCha8Rng,
) -> PixelBox {
    let colour = random_colour(rng);
    let facing_right = rng.random_bool(0.5);
    let (w, h) = (width as f32, height as f32);
    let mirror = |fx: f32| if facing_right { fx } else { 1.0 - fx };
    let at = |fx: f32| x as f32 + w * fx;
    let mut canvas = Canvas {
        image,
        painted: None,
    };

    let wheel_radius = 0.21 * h;
    let body_top = y + (0.40 * h).round() as i32;
    let body_bottom = y + height - (0.75 * wheel_radius).round() as i32;
    // The cabin: a trapezoid whose front (windscreen) slopes more than its back.
    let cabin_bottom = body_top + 1;
    let (top_a, top_b) = (at(mirror(0.30)), at(mirror(0.62)));
    let (bottom_a, bottom_b) = (at(mirror(0.18)), at(mirror(0.80)));
    canvas.trapezoid(
        y,
        cabin_bottom,
        (top_a.min(top_b), top_a.max(top_b)),
        (bottom_a.min(bottom_b), bottom_a.max(bottom_b)),
        colour,
    );
    canvas.rounded_rect(x, body_top, x + width, body_bottom, 0.12 * h, colour);
    // Windows, split by a pillar.
    let glass = [150, 180, 200];
    let window_top = y + (0.08 * h).round() as i32;
    let window_bottom = body_top - 1;
    let inset = 0.05 * w;
    let (wa, wb) = (at(mirror(0.30)), at(mirror(0.62)));
    let (ba, bb) = (at(mirror(0.18)), at(mirror(0.80)));
    let (top_l, top_r) = (wa.min(wb) + inset, wa.max(wb) - inset);
    let (bot_l, bot_r) = (ba.min(bb) + inset, ba.max(bb) - inset);
    let pillar = (top_l + top_r) / 2.0;
    canvas.trapezoid(
        window_top,
        window_bottom,
        (top_l, pillar - 1.5),
        (bot_l, pillar - 1.5),
        glass,
    );
    canvas.trapezoid(
        window_top,
        window_bottom,
        (pillar + 1.5, top_r),
        (pillar + 1.5, bot_r),
        shade(glass, 0.9),
    );
    // Door line, lights, a darker sill.
    let door_x = pillar.round() as i32;
    canvas.rect(
        door_x,
        body_top + 1,
        door_x + 1,
        body_bottom - 2,
        shade(colour, 0.6),
    );
    let light_h = ((0.10 * h).round() as i32).max(2);
    let light_w = ((0.05 * w).round() as i32).max(2);
    let light_y = body_top + (0.15 * h).round() as i32;
    let (front_x, back_x) = if facing_right {
        (x + width - light_w, x)
    } else {
        (x, x + width - light_w)
    };
    canvas.rect(
        front_x,
        light_y,
        front_x + light_w,
        light_y + light_h,
        [250, 240, 180],
    );
    canvas.rect(
        back_x,
        light_y,
        back_x + light_w,
        light_y + light_h,
        [200, 20, 20],
    );
    canvas.rect(
        x + 2,
        body_bottom - 3,
        x + width - 2,
        body_bottom - 1,
        shade(colour, 0.7),
    );
    // Wheels last: they reach the bottom of the box.
    for fx in [0.2, 0.8] {
        let (cx, cy) = (at(fx), (y + height) as f32 - wheel_radius);
        canvas.ellipse(cx, cy, wheel_radius, wheel_radius, [28, 28, 30]);
        canvas.ellipse(
            cx,
            cy,
            0.45 * wheel_radius,
            0.45 * wheel_radius,
            [150, 150, 155],
        );
    }
    canvas.painted.unwrap_or(PixelBox {
        x0: x,
        y0: y,
        x1: x,
        y1: y,
    })
}

/// A car's size: width 50–130 px, width:height 2.0–2.6.
fn car_size(rng: &mut ChaCha8Rng) -> (i32, i32) {
    let width = rng.random_range(50..=130);
    let aspect = rng.random_range(2.0f32..2.6);
    (width, (width as f32 / aspect).round() as i32)
}

fn lerp(a: [u8; 3], b: [u8; 3], t: f32) -> [u8; 3] {
    [0, 1, 2].map(|i| (a[i] as f32 + (b[i] as f32 - a[i] as f32) * t).round() as u8)
}

/// Sky, buildings, pavement and road, with lane marks.
fn draw_background(image: &mut RgbImage, horizon: i32, rng: &mut ChaCha8Rng) {
    let sky_top = [
        rng.random_range(60..120),
        rng.random_range(110..160),
        rng.random_range(180..230),
    ];
    let sky_bottom = [
        rng.random_range(190..230),
        rng.random_range(200..230),
        rng.random_range(215..245),
    ];
    let road = {
        let g = rng.random_range(70..110);
        [g, g, g + 4]
    };
    let pavement = {
        let g = rng.random_range(140..175);
        [g, g - 5, g - 10]
    };
    for y in 0..IMAGE_HEIGHT as i32 {
        let colour = if y < horizon {
            lerp(sky_top, sky_bottom, y as f32 / horizon as f32)
        } else if y < horizon + 14 {
            pavement
        } else {
            lerp(
                road,
                shade(road, 1.15),
                (y - horizon) as f32 / (IMAGE_HEIGHT as f32 - horizon as f32),
            )
        };
        for x in 0..IMAGE_WIDTH {
            image.put_pixel(x, y as u32, Rgb(colour));
        }
    }
    let mut canvas = Canvas {
        image,
        painted: None,
    };
    let mut x = rng.random_range(-30..0);
    while x < IMAGE_WIDTH as i32 {
        let width = rng.random_range(30..90);
        let top = rng.random_range(10..(horizon - 10).max(11));
        let base = [
            rng.random_range(90..200),
            rng.random_range(80..180),
            rng.random_range(70..170),
        ];
        canvas.rect(x, top, x + width, horizon, base);
        let window = if rng.random_bool(0.5) {
            shade(base, 0.55)
        } else {
            [200, 210, 190]
        };
        let mut wy = top + 5;
        while wy + 6 < horizon - 3 {
            let mut wx = x + 4;
            while wx + 5 < x + width - 3 {
                canvas.rect(wx, wy, wx + 5, wy + 6, window);
                wx += 10;
            }
            wy += 11;
        }
        x += width + rng.random_range(0..12);
    }
    let lane_y = rng.random_range(horizon + 40..(horizon + 60).min(IMAGE_HEIGHT as i32 - 10));
    let mut dash = rng.random_range(-20..0);
    while dash < IMAGE_WIDTH as i32 {
        canvas.rect(dash, lane_y, dash + 18, lane_y + 3, [225, 225, 215]);
        dash += 36;
    }
}

/// Things that share a car's parts or colours but are not cars.
fn draw_distractor(image: &mut RgbImage, horizon: i32, taken: &[PixelBox], rng: &mut ChaCha8Rng) {
    for _ in 0..20 {
        let kind = rng.random_range(0..4);
        let (width, height) = match kind {
            0 => (rng.random_range(20..80), rng.random_range(12..45)),
            1 => (rng.random_range(30..90), rng.random_range(12..26)),
            2 => (rng.random_range(30..90), rng.random_range(6..14)),
            _ => (rng.random_range(40..120), rng.random_range(8..20)),
        };
        let x = rng.random_range(-10..IMAGE_WIDTH as i32 - width + 10);
        let y = rng.random_range(horizon - 30..IMAGE_HEIGHT as i32 - height);
        let spot = PixelBox {
            x0: x,
            y0: y,
            x1: x + width,
            y1: y + height,
        };
        if taken.iter().any(|t| t.overlaps(&spot, 6)) {
            continue;
        }
        let mut canvas = Canvas {
            image,
            painted: None,
        };
        match kind {
            // A car-coloured box (a crate, a sign, a parked container).
            0 => {
                let colour = random_colour(rng);
                canvas.rect(x, y, x + width, y + height, shade(colour, 0.7));
                canvas.rect(x + 2, y + 2, x + width - 2, y + height - 2, colour);
            }
            // Two wheels without a body.
            1 => {
                let radius = height as f32 / 2.0;
                for cx in [x as f32 + radius, (x + width) as f32 - radius] {
                    canvas.ellipse(cx, y as f32 + radius, radius, radius, [28, 28, 30]);
                    canvas.ellipse(
                        cx,
                        y as f32 + radius,
                        0.45 * radius,
                        0.45 * radius,
                        [150, 150, 155],
                    );
                }
            }
            // A strip of windows.
            2 => {
                canvas.rect(x, y, x + width, y + height, [60, 60, 65]);
                let mut wx = x + 2;
                while wx + 8 < x + width {
                    canvas.rect(wx, y + 2, wx + 8, y + height - 2, [150, 180, 200]);
                    wx += 11;
                }
            }
            // A dark shadow.
            _ => {
                let (rx, ry) = (width as f32 / 2.0, height as f32 / 2.0);
                canvas.ellipse(x as f32 + rx, y as f32 + ry, rx, ry, [35, 35, 40]);
            }
        }
        return;
    }
}

/// One street scene and its labelled car boxes.
fn draw_scene(rng: &mut ChaCha8Rng) -> (RgbImage, Vec<PixelBox>) {
    let mut image = RgbImage::new(IMAGE_WIDTH, IMAGE_HEIGHT);
    let horizon = rng.random_range(80..120);
    draw_background(&mut image, horizon, rng);

    // Plan the cars first so that distractors keep clear of them.
    let whole_cars = if rng.random_bool(0.2) {
        0
    } else {
        rng.random_range(1..=3)
    };
    let mut planned: Vec<(PixelBox, bool)> = Vec::new();
    let mut attempts = 0;
    while planned.iter().filter(|(_, cut)| !cut).count() < whole_cars && attempts < 50 {
        attempts += 1;
        let (width, height) = car_size(rng);
        let x = rng.random_range(0..=IMAGE_WIDTH as i32 - width);
        let bottom = rng.random_range(horizon + 20..=IMAGE_HEIGHT as i32);
        let spot = PixelBox::standing(x, bottom, width, height);
        if planned.iter().all(|(p, _)| !p.overlaps(&spot, 4)) {
            planned.push((spot, false));
        }
    }
    // Sometimes a car cut by the left or right edge: clearly over or clearly under the
    // visibility threshold.
    if rng.random_bool(0.3) {
        let (width, height) = car_size(rng);
        let visible_share = if rng.random_bool(0.5) {
            rng.random_range(0.7f32..0.9)
        } else {
            rng.random_range(0.2f32..0.45)
        };
        let visible = (width as f32 * visible_share).round() as i32;
        let x = if rng.random_bool(0.5) {
            visible - width
        } else {
            IMAGE_WIDTH as i32 - visible
        };
        let bottom = rng.random_range(horizon + 20..=IMAGE_HEIGHT as i32);
        let spot = PixelBox::standing(x, bottom, width, height);
        if planned.iter().all(|(p, _)| !p.overlaps(&spot, 4)) {
            planned.push((spot, true));
        }
    }
    let taken: Vec<PixelBox> = planned.iter().map(|(p, _)| *p).collect();
    for _ in 0..rng.random_range(1..=4) {
        draw_distractor(&mut image, horizon, &taken, rng);
    }
    // Nearer cars (lower in the image) are drawn last, though planned cars never overlap.
    planned.sort_by_key(|(p, _)| (p.y1, p.x0));
    let mut labels = Vec::new();
    for (spot, _) in planned {
        let painted = draw_car(
            &mut image,
            spot.x0,
            spot.y0,
            spot.x1 - spot.x0,
            spot.y1 - spot.y0,
            rng,
        );
        let visible = painted.clipped();
        if visible.area() as f32 >= MIN_VISIBLE_SHARE * painted.area() as f32 {
            labels.push(visible);
        }
    }
    add_noise(&mut image, rng);
    labels.sort_by_key(|b| (b.y0, b.x0));
    (image, labels)
}

/// Luminance grain, so that flat areas are not trivially separable.
fn add_noise(image: &mut RgbImage, rng: &mut ChaCha8Rng) {
    for pixel in image.pixels_mut() {
        let offset: i16 = rng.random_range(-5..=5);
        for channel in pixel.0.iter_mut() {
            *channel = (*channel as i16 + offset).clamp(0, 255) as u8;
        }
    }
}

#[derive(clap::Parser)]
#[command(about = "Write the synthetic car dataset in sample_data/")]
struct Args {
    /// Seed of every random choice: the same seed gives byte-identical files.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Folder to write (its images/ and labels/ are replaced).
    #[arg(long, default_value = "sample_data")]
    out: std::path::PathBuf,
    #[arg(long, default_value_t = 160)]
    train: usize,
    #[arg(long, default_value_t = 40)]
    val: usize,
}

#[allow(dead_code)]
fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    std::fs::create_dir_all(&args.out)?;
    let summary = generate(args.seed, &args.out, args.train, args.val)?;
    println!(
        "wrote {} images ({} without a car) and {} boxes to {}",
        summary.images,
        summary.negative_images,
        summary.boxes,
        args.out.display()
    );
    Ok(())
}
