//! EXIF orientation: how a stored image turns to stand upright, and the same turn for a box
//! drawn on the stored pixels. Pure geometry: nothing here reads a file.

use image::metadata::Orientation;

use crate::geometry::Rect;

/// The size after `orientation`: a quarter turn swaps the sides, so this maps the stored size
/// to the upright one and the upright size back to the stored one alike.
pub(crate) fn turned_size(orientation: Orientation, width: u32, height: u32) -> (u32, u32) {
    match orientation {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => (height, width),
        Orientation::NoTransforms
        | Orientation::Rotate180
        | Orientation::FlipHorizontal
        | Orientation::FlipVertical => (width, height),
    }
}

/// A box on the stored pixels of a `width`×`height` image → the same box on the image turned
/// upright by `orientation`, exactly as `DynamicImage::apply_orientation` moves the pixels.
///
/// Corners are mapped one by one, never sorted, so that a box with no area keeps none and is
/// still reported as such.
pub(crate) fn upright_rect(rect: &Rect, orientation: Orientation, width: f32, height: f32) -> Rect {
    let Rect { x0, y0, x1, y1 } = *rect;
    let (w, h) = (width, height);
    match orientation {
        Orientation::NoTransforms => *rect,
        Orientation::FlipHorizontal => Rect::new(w - x1, y0, w - x0, y1),
        Orientation::Rotate180 => Rect::new(w - x1, h - y1, w - x0, h - y0),
        Orientation::FlipVertical => Rect::new(x0, h - y1, x1, h - y0),
        // Clockwise: the stored left column becomes the top row.
        Orientation::Rotate90 => Rect::new(h - y1, x0, h - y0, x1),
        Orientation::Rotate270 => Rect::new(y0, w - x1, y1, w - x0),
        // A transpose (EXIF 5) and a transverse (EXIF 7).
        Orientation::Rotate90FlipH => Rect::new(y0, x0, y1, x1),
        Orientation::Rotate270FlipH => Rect::new(h - y1, w - x1, h - y0, w - x0),
    }
}

/// How a note names the turn, e.g. "turned 90° clockwise".
pub(crate) fn describe(orientation: Orientation) -> &'static str {
    match orientation {
        Orientation::NoTransforms => "left as stored",
        Orientation::FlipHorizontal => "mirrored left to right",
        Orientation::Rotate180 => "turned 180°",
        Orientation::FlipVertical => "mirrored top to bottom",
        Orientation::Rotate90 => "turned 90° clockwise",
        Orientation::Rotate270 => "turned 90° anticlockwise",
        Orientation::Rotate90FlipH => "turned 90° clockwise and mirrored",
        Orientation::Rotate270FlipH => "turned 90° anticlockwise and mirrored",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, Rgb, RgbImage};

    /// Where the one white pixel of `image` is.
    fn white_pixel(image: &RgbImage) -> (u32, u32) {
        let (x, y, _) = image
            .enumerate_pixels()
            .find(|(_, _, p)| p.0 == [255, 255, 255])
            .expect("the marked pixel survives the turn");
        (x, y)
    }

    #[test]
    fn boxes_follow_the_pixels_for_every_exif_orientation() {
        // A 5×3 image with one white pixel at column 3, row 0: off every axis of symmetry.
        let (width, height) = (5u32, 3u32);
        let mut stored = RgbImage::new(width, height);
        stored.put_pixel(3, 0, Rgb([255, 255, 255]));
        let marked = Rect::new(3.0, 0.0, 4.0, 1.0);
        for exif in 1..=8u8 {
            let orientation = Orientation::from_exif(exif).expect("1–8 are orientations");
            let mut upright = DynamicImage::ImageRgb8(stored.clone());
            upright.apply_orientation(orientation);
            let upright = upright.into_rgb8();
            assert_eq!(
                upright.dimensions(),
                turned_size(orientation, width, height),
                "EXIF {exif}"
            );
            let (x, y) = white_pixel(&upright);
            let moved = upright_rect(&marked, orientation, width as f32, height as f32);
            let expected = Rect::new(x as f32, y as f32, x as f32 + 1.0, y as f32 + 1.0);
            assert_eq!(moved, expected, "EXIF {exif}");
        }
    }

    #[test]
    fn a_quarter_turn_maps_a_box_by_hand() {
        // EXIF 6 on a 64×40 photo: the upright image is 40×64, the stored top-right corner
        // lands at the bottom-right.
        let rect = Rect::new(40.0, 8.0, 56.0, 20.0);
        let moved = upright_rect(&rect, Orientation::Rotate90, 64.0, 40.0);
        assert_eq!(moved, Rect::new(20.0, 40.0, 32.0, 56.0));
        assert_eq!(turned_size(Orientation::Rotate90, 64, 40), (40, 64));
    }

    #[test]
    fn a_box_without_area_keeps_none() {
        let flat = Rect::new(10.0, 5.0, 10.0, 9.0);
        for exif in 1..=8u8 {
            let orientation = Orientation::from_exif(exif).expect("1–8 are orientations");
            assert_eq!(
                upright_rect(&flat, orientation, 20.0, 12.0).area(),
                0.0,
                "EXIF {exif}"
            );
        }
    }
}
