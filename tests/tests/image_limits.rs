//! Decompression bombs: an image header claiming more pixels than we accept is refused
//! from the header alone, before anything is decoded or allocated.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mio_models::image_tokenizer::decode_rgb;

/// CRC-32 (IEEE) as PNG chunks need it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let body: Vec<u8> = kind.iter().chain(data).copied().collect();
    out.extend(&body);
    out.extend(crc32(&body).to_be_bytes());
    out
}

/// A PNG whose header claims `w`×`h` RGB pixels, with a token (incomplete) data chunk.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    // zlib stream of a single stored empty block.
    png.extend(chunk(
        b"IDAT",
        &[
            0x78, 0x01, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x01,
        ],
    ));
    png.extend(chunk(b"IEND", &[]));
    png
}

#[test]
fn huge_images_are_refused_from_the_header() {
    for (w, h) in [(20_000, 20_000), (100_000, 10), (9_000, 9_000)] {
        let err = decode_rgb(&png_claiming(w, h)).unwrap_err();
        assert!(
            err.contains(&format!("{w}x{h} pixels")) && err.contains("largest accepted"),
            "{err}"
        );
    }
    // A small image with the same (incomplete) data is not refused for its size.
    let err = decode_rgb(&png_claiming(64, 64)).unwrap_err();
    assert!(!err.contains("largest accepted"), "{err}");
}
