//! A tiny YOLO folder with two deliberate labelling mistakes, for the label-suspect tests: the
//! real trainer on real pixels, in seconds.

use std::path::Path;

/// Holds two cars, only one of them labelled: the other is trained as background.
pub const MISSING_LABEL_IMAGE: &str = "missing.png";
/// Holds one labelled car and one label on empty ground.
pub const WRONG_BOX_IMAGE: &str = "road.png";
/// Where the unlabelled car of [`MISSING_LABEL_IMAGE`] is, `[x0, y0, x1, y1]` in pixels.
pub const UNLABELLED_CAR: [u32; 4] = [50, 60, 90, 84];
/// The label on empty ground in [`WRONG_BOX_IMAGE`].
pub const EMPTY_BOX: [u32; 4] = [8, 62, 48, 86];

/// Correctly labelled training images. A mistake is one label among many, as in a real
/// dataset: with only a handful of images an ImageNet-pretrained detector soon learns the label
/// on empty ground by heart (it scored it 0.75 after 110 steps with six), and nothing looks wrong.
const PLAIN_IMAGES: u32 = 24;
const SIDE: u32 = 96;
const CAR: (u32, u32) = (40, 24);

/// Writes the folder: [`PLAIN_IMAGES`] training images with one car each, the two mislabelled
/// ones, and two validation images.
pub fn write_mislabelled(root: &Path) {
    std::fs::write(
        root.join("data.yaml"),
        "path: .\ntrain: images/train\nval: images/val\nnames: [car]\n",
    )
    .expect("write data.yaml");
    for split in ["train", "val"] {
        std::fs::create_dir_all(root.join("images").join(split)).expect("create folders");
        std::fs::create_dir_all(root.join("labels").join(split)).expect("create folders");
    }
    for i in 0..PLAIN_IMAGES {
        let car = [6 + (7 * i) % 50, 8 + (9 * i) % 64];
        write(root, "train", &format!("{i}.png"), i, &[car], &[car]);
    }
    for i in 0..2u32 {
        let car = [30 - 10 * i, 20 + 30 * i];
        write(root, "val", &format!("{i}.png"), 10 + i, &[car], &[car]);
    }
    let [x, y, ..] = UNLABELLED_CAR;
    write(
        root,
        "train",
        MISSING_LABEL_IMAGE,
        6,
        &[[6, 8], [x, y]],
        &[[6, 8]],
    );
    let [ex, ey, ..] = EMPTY_BOX;
    write(
        root,
        "train",
        WRONG_BOX_IMAGE,
        7,
        &[[50, 8]],
        &[[50, 8], [ex, ey]],
    );
}

/// One image with cars drawn at `cars` and car-sized labels at `labels` (top-left corners).
fn write(root: &Path, split: &str, name: &str, seed: u32, cars: &[[u32; 2]], labels: &[[u32; 2]]) {
    let (w, h) = CAR;
    let image = image::RgbImage::from_fn(SIDE, SIDE, |x, y| {
        let on_car = cars
            .iter()
            .any(|&[cx, cy]| x >= cx && x < cx + w && y >= cy && y < cy + h);
        if on_car {
            image::Rgb([220, 40 + (x % 7) as u8 * 10, 40])
        } else {
            let v = ((x * 31 + y * 17 + seed * 13) % 90) as u8;
            image::Rgb([v, v + 20, v + 40])
        }
    });
    let stem = name.trim_end_matches(".png");
    image
        .save(root.join("images").join(split).join(name))
        .expect("write image");
    let side = SIDE as f32;
    let lines: String = labels
        .iter()
        .map(|&[x, y]| {
            let (cx, cy) = (x as f32 + w as f32 / 2.0, y as f32 + h as f32 / 2.0);
            format!(
                "0 {} {} {} {}\n",
                cx / side,
                cy / side,
                w as f32 / side,
                h as f32 / side
            )
        })
        .collect();
    std::fs::write(
        root.join("labels").join(split).join(format!("{stem}.txt")),
        lines,
    )
    .expect("write labels");
}
