//! `hard_examples.thumbs`: the pixels of each step's hard examples, appended as one record per
//! step — a small header, then the step's thumbnails as one JPEG grid (about a tenth of the raw
//! pixels). A reader finds the records from their headers alone and decodes only those it
//! shows; a record cut short by a kill is simply not read.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, Context};
use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, RgbImage};

use crate::train::messages::Thumbnail;

const MAGIC: &[u8; 4] = b"OHT2";
/// Magic, step (u64), tile width, tile height, tile count, tiles per grid row, JPEG length.
const HEADER: usize = 4 + 8 + 5 * 4;
const QUALITY: u8 = 85;
/// The widest grid row, in pixels: JPEG allows 65,535.
const MAX_ROW_PX: usize = 8192;

/// Appends the record of `step`'s `thumbnails` (all of one size) to `out`.
pub fn append(out: &mut impl Write, step: u64, thumbnails: &[Thumbnail]) -> anyhow::Result<()> {
    let Some(first) = thumbnails.first() else {
        return Ok(());
    };
    let (w, h) = (first.width, first.height);
    if thumbnails.iter().any(|t| t.width != w || t.height != h) {
        bail!("the hard examples of step {step} have thumbnails of different sizes");
    }
    let cols = (MAX_ROW_PX / w.max(1)).clamp(1, thumbnails.len());
    let rows = thumbnails.len().div_ceil(cols);
    let mut grid = RgbImage::new((w * cols) as u32, (h * rows) as u32);
    for (i, thumbnail) in thumbnails.iter().enumerate() {
        let (left, top) = ((i % cols) * w, (i / cols) * h);
        for (p, rgba) in thumbnail.rgba.chunks_exact(4).enumerate() {
            let (x, y) = ((left + p % w) as u32, (top + p / w) as u32);
            grid.put_pixel(x, y, image::Rgb([rgba[0], rgba[1], rgba[2]]));
        }
    }
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, QUALITY).encode(
        grid.as_raw(),
        grid.width(),
        grid.height(),
        ExtendedColorType::Rgb8,
    )?;
    out.write_all(MAGIC)?;
    out.write_all(&step.to_le_bytes())?;
    for n in [w, h, thumbnails.len(), cols, jpeg.len()] {
        out.write_all(&(n as u32).to_le_bytes())?;
    }
    out.write_all(&jpeg)?;
    Ok(())
}

/// One record: its step, its layout and its place in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub step: u64,
    pub tile_w: usize,
    pub tile_h: usize,
    /// Thumbnails in the record: the step's picks.
    pub count: usize,
    cols: usize,
    pub start: u64,
    pub end: u64,
}

impl Record {
    fn parse(header: &[u8; HEADER], start: u64) -> anyhow::Result<Self> {
        if &header[..4] != MAGIC {
            bail!("not a thumbnail record at byte {start}");
        }
        let word = |i: usize| {
            u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]) as usize
        };
        let mut step = [0u8; 8];
        step.copy_from_slice(&header[4..12]);
        Ok(Self {
            step: u64::from_le_bytes(step),
            tile_w: word(12),
            tile_h: word(16),
            count: word(20),
            cols: word(24).max(1),
            start,
            end: start + (HEADER + word(28)) as u64,
        })
    }
}

/// The complete records of `path` from byte `from` on, read from their headers alone; stops
/// at a record cut short (or not yet written whole). A missing file has none.
pub fn index(path: &Path, from: u64) -> anyhow::Result<Vec<Record>> {
    let Ok(mut file) = File::open(path) else {
        return Ok(Vec::new());
    };
    let len = file.metadata()?.len();
    let mut found = Vec::new();
    let mut at = from;
    let mut header = [0u8; HEADER];
    while at + HEADER as u64 <= len {
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(&mut header)?;
        let record = Record::parse(&header, at).with_context(|| format!("{}", path.display()))?;
        if record.end > len {
            break;
        }
        at = record.end;
        found.push(record);
    }
    Ok(found)
}

/// The thumbnails of `record`, read from `path`.
pub fn decode(path: &Path, record: Record) -> anyhow::Result<Vec<Thumbnail>> {
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    file.seek(SeekFrom::Start(record.start + HEADER as u64))?;
    let mut jpeg = vec![0u8; (record.end - record.start) as usize - HEADER];
    file.read_exact(&mut jpeg)?;
    let grid = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
        .with_context(|| format!("the thumbnails of step {}", record.step))?
        .to_rgba8();
    let (w, h, cols) = (record.tile_w, record.tile_h, record.cols);
    let rows = record.count.div_ceil(cols);
    if grid.width() as usize != w * cols.min(record.count) || grid.height() as usize != h * rows {
        bail!("the thumbnails of step {} have the wrong size", record.step);
    }
    Ok((0..record.count)
        .map(|i| {
            let (x, y) = ((i % cols) * w, (i / cols) * h);
            let tile = image::imageops::crop_imm(&grid, x as u32, y as u32, w as u32, h as u32);
            Thumbnail {
                width: w,
                height: h,
                rgba: tile.to_image().into_raw(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tile(width: usize, shade: u8) -> Thumbnail {
        Thumbnail {
            width,
            height: 4,
            rgba: [shade, shade, shade, 255].repeat(width * 4),
        }
    }

    #[test]
    fn records_round_trip_and_a_cut_record_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.thumbs");
        let mut file = Vec::new();
        append(&mut file, 3, &[tile(8, 10), tile(8, 200)]).unwrap();
        let whole = file.len() as u64;
        append(&mut file, 4, &[tile(8, 90)]).unwrap();
        std::fs::write(&path, &file).unwrap();
        let found = index(&path, 0).unwrap();
        assert_eq!(found.iter().map(|r| r.step).collect::<Vec<_>>(), [3, 4]);
        let tiles = decode(&path, found[0]).unwrap();
        assert_eq!(tiles.len(), 2);
        assert!((i32::from(tiles[1].rgba[0]) - 200).abs() < 8);
        std::fs::write(&path, &file[..file.len() - 5]).unwrap();
        let cut = index(&path, 0).unwrap();
        assert_eq!(cut.len(), 1);
        assert_eq!(cut[0].end, whole);
    }

    #[test]
    fn many_wide_thumbnails_wrap_into_rows_jpeg_can_hold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.thumbs");
        let tiles: Vec<Thumbnail> = (0..300).map(|i| tile(256, (i % 250) as u8)).collect();
        let mut file = Vec::new();
        append(&mut file, 1, &tiles).unwrap();
        std::fs::write(&path, &file).unwrap();
        let record = index(&path, 0).unwrap()[0];
        let back = decode(&path, record).unwrap();
        assert_eq!(back.len(), 300);
        assert!((i32::from(back[299].rgba[0]) - 49).abs() < 8);
    }
}
