//! Small dataset fixtures written into temporary folders by the tests themselves.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};

/// Writes `text` to `root/relative`, creating folders.
pub fn write_text(root: &Path, relative: &str, text: &str) -> PathBuf {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().expect("a file has a parent")).expect("create folders");
    std::fs::write(&path, text).expect("write fixture");
    path
}

/// Writes raw bytes to `root/relative`, creating folders.
pub fn write_bytes(root: &Path, relative: &str, bytes: &[u8]) -> PathBuf {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().expect("a file has a parent")).expect("create folders");
    std::fs::write(&path, bytes).expect("write fixture");
    path
}

/// A textured RGB image (so that JPEG encoding has real content).
pub fn pattern(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([
            (x * 7 % 256) as u8,
            (y * 5 % 256) as u8,
            ((x * y + x * 3) % 256) as u8,
        ])
    })
}

/// Writes a `width`×`height` image at `root/relative`, in the format its extension names.
pub fn write_image(root: &Path, relative: &str, width: u32, height: u32) -> PathBuf {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().expect("a file has a parent")).expect("create folders");
    pattern(width, height)
        .save(&path)
        .expect("encode fixture image");
    path
}

/// PNG bytes of a `width`×`height` image, whatever name they are later given.
pub fn png_bytes(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    pattern(width, height)
        .write_to(&mut bytes, image::ImageFormat::Png)
        .expect("encode png");
    bytes.into_inner()
}

/// JPEG bytes of a `width`×`height` image.
pub fn jpeg_bytes(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    pattern(width, height)
        .write_to(&mut bytes, image::ImageFormat::Jpeg)
        .expect("encode jpeg");
    bytes.into_inner()
}

/// An 8-bit palette PNG (colour type 3), as photo-editing tools save small graphics; the image
/// crate only writes truecolour, so the file is assembled here (uncompressed deflate blocks).
pub fn palette_png_bytes(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            raw.push(((x + y) % 4) as u8);
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());

    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 3, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &header);
    chunk(
        &mut out,
        b"PLTE",
        &[255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255],
    );
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// Asserts two rectangles match to a hundredth of a pixel.
#[track_caller]
pub fn assert_rect(actual: ohem_studio::geometry::Rect, expected: [f32; 4]) {
    let got = [actual.x0, actual.y0, actual.x1, actual.y1];
    for (g, e) in got.iter().zip(expected) {
        assert!((g - e).abs() < 0.01, "box {got:?}, expected {expected:?}");
    }
}

/// File names of a split's images, sorted.
pub fn names(records: &[ohem_studio::data::ImageRecord]) -> Vec<String> {
    let mut names: Vec<String> = records
        .iter()
        .map(|r| {
            r.path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

pub mod app;
pub mod cars;
pub mod cli;
pub mod mislabelled;

/// The committed synthetic dataset.
pub fn sample_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample_data")
}
