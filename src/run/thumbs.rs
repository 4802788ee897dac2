//! `hard_examples.thumbs`: the pixels of each step's hard examples, appended as one record per
//! step — a small header, then the step's thumbnails side by side as one JPEG strip (about a
//! tenth of the raw pixels). A record cut short by a kill is simply not read.

use std::io::Write;

use anyhow::{bail, Context};
use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, RgbImage};

use crate::train::messages::Thumbnail;

const MAGIC: &[u8; 4] = b"OHT1";
/// Magic, step (u64), tile width, tile height, tile count, JPEG length (u32 each).
const HEADER: usize = 4 + 8 + 4 * 4;
const QUALITY: u8 = 85;

/// Appends the record of `step`'s `thumbnails` (all of one size) to `out`.
pub fn append(out: &mut impl Write, step: u64, thumbnails: &[Thumbnail]) -> anyhow::Result<()> {
    let Some(first) = thumbnails.first() else {
        return Ok(());
    };
    let (w, h) = (first.width, first.height);
    if thumbnails.iter().any(|t| t.width != w || t.height != h) {
        bail!("the hard examples of step {step} have thumbnails of different sizes");
    }
    let mut strip = RgbImage::new((w * thumbnails.len()) as u32, h as u32);
    for (i, thumbnail) in thumbnails.iter().enumerate() {
        for (p, rgba) in thumbnail.rgba.chunks_exact(4).enumerate() {
            let (x, y) = ((i * w + p % w) as u32, (p / w) as u32);
            strip.put_pixel(x, y, image::Rgb([rgba[0], rgba[1], rgba[2]]));
        }
    }
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, QUALITY).encode(
        strip.as_raw(),
        strip.width(),
        strip.height(),
        ExtendedColorType::Rgb8,
    )?;
    out.write_all(MAGIC)?;
    out.write_all(&step.to_le_bytes())?;
    for n in [w, h, thumbnails.len(), jpeg.len()] {
        out.write_all(&(n as u32).to_le_bytes())?;
    }
    out.write_all(&jpeg)?;
    Ok(())
}

/// One record's place in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub step: u64,
    pub start: usize,
    pub end: usize,
}

/// The complete records in `bytes` from offset `from`; stops at a record cut short.
pub fn records(bytes: &[u8], from: usize) -> anyhow::Result<Vec<Record>> {
    let mut found = Vec::new();
    let mut at = from;
    while bytes.len() >= at + HEADER {
        let header = &bytes[at..at + HEADER];
        if &header[..4] != MAGIC {
            bail!("not a thumbnail record at byte {at}");
        }
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let step = u64::from_le_bytes(header[4..12].try_into().context("header")?);
        let end = at + HEADER + word(24) as usize;
        if end > bytes.len() {
            break;
        }
        found.push(Record {
            step,
            start: at,
            end,
        });
        at = end;
    }
    Ok(found)
}

/// The thumbnails of one record.
pub fn decode(bytes: &[u8], record: Record) -> anyhow::Result<Vec<Thumbnail>> {
    let header = &bytes[record.start..record.start + HEADER];
    let word = |i: usize| {
        u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]) as usize
    };
    let (w, h, count) = (word(12), word(16), word(20));
    let strip = image::load_from_memory_with_format(
        &bytes[record.start + HEADER..record.end],
        image::ImageFormat::Jpeg,
    )
    .with_context(|| format!("the thumbnails of step {}", record.step))?
    .to_rgba8();
    if strip.width() as usize != w * count || strip.height() as usize != h {
        bail!(
            "the thumbnail strip of step {} has the wrong size",
            record.step
        );
    }
    Ok((0..count)
        .map(|i| {
            let tile = image::imageops::crop_imm(&strip, (i * w) as u32, 0, w as u32, h as u32);
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

    fn tile(shade: u8) -> Thumbnail {
        Thumbnail {
            width: 8,
            height: 4,
            rgba: [shade, shade, shade, 255].repeat(32),
        }
    }

    #[test]
    fn records_round_trip_and_a_cut_record_is_left_out() {
        let mut file = Vec::new();
        append(&mut file, 3, &[tile(10), tile(200)]).unwrap();
        let whole = file.len();
        append(&mut file, 4, &[tile(90)]).unwrap();
        let found = records(&file, 0).unwrap();
        assert_eq!(found.iter().map(|r| r.step).collect::<Vec<_>>(), [3, 4]);
        let tiles = decode(&file, found[0]).unwrap();
        assert_eq!(tiles.len(), 2);
        assert!((i32::from(tiles[1].rgba[0]) - 200).abs() < 8);
        let cut = records(&file[..file.len() - 5], 0).unwrap();
        assert_eq!(
            cut,
            vec![Record {
                step: 3,
                start: 0,
                end: whole
            }]
        );
    }
}
