//! A drawn signature's PNG, read chunk by chunk before any decoder sees it: the structure the
//! specification requires (signature, IHDR first, lengths inside the file, a palette that is
//! whole triples, transparency no longer than the palette, IEND last), with nothing decoded.
//!
//! Cheap and made only of bounds-checked slices, so it runs before an approver's proof is
//! spent; the full decode (`png`) runs only after the proof, on bytes that passed this. It also
//! keeps malformed chunks away from the decoder: `png` 0.18.1 panics on a 4-byte PLTE
//! (image-rs/image-png#694), which this refuses.

/// Why the bytes are not a PNG the decoder may see.
pub type Refusal = String;

const SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// The colour types and the bit depths each allows (PNG specification, table 11.1).
fn depths(colour_type: u8) -> Option<&'static [u8]> {
    match colour_type {
        0 => Some(&[1, 2, 4, 8, 16]),
        2 | 4 | 6 => Some(&[8, 16]),
        3 => Some(&[1, 2, 4, 8]),
        _ => None,
    }
}

fn be32(bytes: &[u8]) -> u32 {
    bytes
        .get(..4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Checks `bytes` chunk by chunk; returns the image's width and height, each at most
/// `max_side`.
pub fn check_structure(bytes: &[u8], max_side: u32) -> Result<(u32, u32), Refusal> {
    let mut rest = bytes
        .strip_prefix(SIGNATURE)
        .ok_or("not a PNG: the signature is missing")?;
    let mut header: Option<(u32, u32, u8, u8)> = None;
    let mut palette_entries: Option<usize> = None;
    let mut seen_data = false;
    let mut ended = false;
    while !rest.is_empty() {
        if ended {
            return Err("bytes follow IEND".into());
        }
        let length = usize::try_from(be32(rest)).map_err(|_| "a chunk length is too large")?;
        let kind = rest
            .get(4..8)
            .ok_or("the file ends inside a chunk header")?;
        let data = rest
            .get(8..8 + length)
            .ok_or("a chunk runs past the end of the file")?;
        rest = rest
            .get(8 + length + 4..)
            .ok_or("the file ends inside a chunk's CRC")?;
        let kind: [u8; 4] = [kind[0], kind[1], kind[2], kind[3]];
        if header.is_none() && &kind != b"IHDR" {
            return Err("the first chunk is not IHDR".into());
        }
        match &kind {
            b"IHDR" => {
                if header.is_some() {
                    return Err("IHDR appears twice".into());
                }
                if length != 13 {
                    return Err("IHDR is not 13 bytes".into());
                }
                let (width, height) = (be32(data), be32(&data[4..]));
                let (depth, colour_type) = (data[8], data[9]);
                if width == 0 || height == 0 || width > max_side || height > max_side {
                    return Err(format!(
                        "{width}x{height} is outside 1..={max_side} pixels a side"
                    ));
                }
                if !depths(colour_type).is_some_and(|allowed| allowed.contains(&depth)) {
                    return Err(format!("bit depth {depth} with colour type {colour_type}"));
                }
                if data[10] != 0 || data[11] != 0 || data[12] > 1 {
                    return Err("unknown compression, filter or interlace method".into());
                }
                header = Some((width, height, depth, colour_type));
            }
            b"PLTE" => {
                if palette_entries.is_some() || seen_data {
                    return Err("PLTE is repeated or after IDAT".into());
                }
                let entries = length / 3;
                let most = match header {
                    Some((_, _, depth, 3)) => 1usize << depth,
                    _ => 256,
                };
                if length % 3 != 0 || entries == 0 || entries > most {
                    return Err(format!(
                        "PLTE of {length} bytes is not 1 to {most} colours of 3 bytes"
                    ));
                }
                palette_entries = Some(entries);
            }
            b"tRNS" => {
                let fits = match header {
                    Some((_, _, _, 0)) => length == 2,
                    Some((_, _, _, 2)) => length == 6,
                    Some((_, _, _, 3)) => palette_entries.is_some_and(|n| length <= n),
                    _ => false,
                };
                if !fits || seen_data {
                    return Err("tRNS does not fit the image's colours".into());
                }
            }
            b"IDAT" => {
                if header.is_some_and(|(_, _, _, colour_type)| colour_type == 3)
                    && palette_entries.is_none()
                {
                    return Err("an indexed-colour image has no PLTE before IDAT".into());
                }
                seen_data = true;
            }
            b"IEND" => {
                if length != 0 {
                    return Err("IEND is not empty".into());
                }
                ended = true;
            }
            _ => {}
        }
    }
    if !seen_data || !ended {
        return Err("the image has no IDAT or no IEND".into());
    }
    header
        .map(|(width, height, _, _)| (width, height))
        .ok_or_else(|| "the first chunk is not IHDR".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&[0; 4]); // The CRC is the decoder's to check.
        out
    }

    fn png(chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        for c in chunks {
            out.extend_from_slice(c);
        }
        out
    }

    fn ihdr(width: u32, height: u32, depth: u8, colour_type: u8) -> Vec<u8> {
        let mut data = width.to_be_bytes().to_vec();
        data.extend_from_slice(&height.to_be_bytes());
        data.extend_from_slice(&[depth, colour_type, 0, 0, 0]);
        chunk(b"IHDR", &data)
    }

    #[test]
    fn well_formed_chunks_pass_and_malformed_ones_do_not() {
        let idat = chunk(b"IDAT", &[0; 10]);
        let iend = chunk(b"IEND", &[]);
        let indexed = |palette: &[u8], transparency: Option<&[u8]>| {
            let mut chunks = vec![ihdr(99, 544, 4, 3), chunk(b"PLTE", palette)];
            if let Some(t) = transparency {
                chunks.push(chunk(b"tRNS", t));
            }
            chunks.extend([idat.clone(), iend.clone()]);
            png(&chunks)
        };
        assert_eq!(
            check_structure(&indexed(&[0; 6], Some(&[0, 255])), 2000),
            Ok((99, 544))
        );
        let grey = png(&[ihdr(10, 10, 8, 0), idat.clone(), iend.clone()]);
        assert_eq!(check_structure(&grey, 2000), Ok((10, 10)));

        let refused = [
            // The palette that panics png 0.18.1: 4 bytes.
            indexed(&[0, 0, 0, 255], None),
            indexed(&[], None),
            indexed(&[0; 17 * 3], None),
            indexed(&[0; 3], Some(&[0, 0])),
            png(&[ihdr(10, 10, 4, 3), idat.clone(), iend.clone()]),
            png(&[
                ihdr(10, 10, 16, 3),
                chunk(b"PLTE", &[0; 3]),
                idat.clone(),
                iend.clone(),
            ]),
            png(&[ihdr(0, 10, 8, 0), idat.clone(), iend.clone()]),
            png(&[ihdr(2001, 10, 8, 0), idat.clone(), iend.clone()]),
            png(&[ihdr(10, 10, 8, 5), idat.clone(), iend.clone()]),
            png(&[idat.clone(), ihdr(10, 10, 8, 0), iend.clone()]),
            png(&[ihdr(10, 10, 8, 0), idat.clone()]),
            png(&[ihdr(10, 10, 8, 0), iend.clone(), idat.clone()]),
            png(&[
                ihdr(10, 10, 8, 0),
                chunk(b"tRNS", &[0; 6]),
                idat.clone(),
                iend.clone(),
            ]),
            b"GIF89a".to_vec(),
            SIGNATURE.to_vec()[..7].to_vec(),
        ];
        for bytes in refused {
            assert!(check_structure(&bytes, 2000).is_err(), "{bytes:02x?}");
        }
        // A length that runs past the end, and every truncation of a good file.
        let mut long = grey.clone();
        long[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(check_structure(&long, 2000).is_err());
        for end in 0..grey.len() {
            assert!(check_structure(&grey[..end], 2000).is_err(), "{end}");
        }
    }
}
