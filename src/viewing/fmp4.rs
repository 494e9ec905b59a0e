//! Where a fragment starts in time: the video track's timescale (`moov/trak/mdia/mdhd`)
//! and each fragment's decode time (`moof/traf/tfdt`), read from the box bytes.
//! Pure; the boxes are read by the caller.

/// The children of a box body: (type, body).
fn children(mut bytes: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    std::iter::from_fn(move || {
        let size = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let kind: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
        let (header, size) = match size {
            1 => (16, usize::try_from(u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?)).ok()?),
            0 => (8, bytes.len()),
            n => (8, n),
        };
        let body = bytes.get(header..size)?;
        bytes = &bytes[size..];
        Some((kind, body))
    })
}

/// The body of the first box along `path` under `bytes` (a box body).
fn find<'a>(bytes: &'a [u8], path: &[&[u8; 4]]) -> Option<&'a [u8]> {
    let (first, rest) = path.split_first()?;
    let (_, body) = children(bytes).find(|(kind, _)| kind == *first)?;
    if rest.is_empty() { Some(body) } else { find(body, rest) }
}

/// The first track's timescale (ticks per second), from a `moov` box (header included).
pub fn timescale(moov: &[u8]) -> Option<u32> {
    let mdhd = find(moov, &[b"moov", b"trak", b"mdia", b"mdhd"])?;
    let at = if *mdhd.first()? == 1 { 20 } else { 12 };
    let ticks = u32::from_be_bytes(mdhd.get(at..at + 4)?.try_into().ok()?);
    (ticks > 0).then_some(ticks)
}

/// A fragment's decode time in its track's ticks, from a `moof` box (header included).
pub fn decode_time(moof: &[u8]) -> Option<u64> {
    let tfdt = find(moof, &[b"moof", b"traf", b"tfdt"])?;
    match *tfdt.first()? {
        1 => Some(u64::from_be_bytes(tfdt.get(4..12)?.try_into().ok()?)),
        _ => Some(u64::from(u32::from_be_bytes(tfdt.get(4..8)?.try_into().ok()?))),
    }
}

/// Seconds each fragment lasts, from their decode times: the next one's start minus its own;
/// the last (whose end is not written yet) as long as the one before, or `nominal`.
pub fn durations(decode_times: &[Option<u64>], timescale: Option<u32>, nominal: f64) -> Vec<f64> {
    let mut durations: Vec<f64> = decode_times
        .windows(2)
        .map(|pair| match (pair[0], pair[1], timescale) {
            (Some(a), Some(b), Some(scale)) if b > a => (b - a) as f64 / f64::from(scale),
            _ => nominal,
        })
        .collect();
    if !decode_times.is_empty() {
        durations.push(durations.last().copied().unwrap_or(nominal));
    }
    durations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn the_timescale_is_read_from_mdhd_of_either_version() {
        let v0 = [vec![0, 0, 0, 0], vec![0; 8], 90_000u32.to_be_bytes().to_vec(), vec![0; 8]].concat();
        let moov =
            boxed(b"moov", &boxed(b"trak", &boxed(b"mdia", &[boxed(b"hdlr", &[0; 8]), boxed(b"mdhd", &v0)].concat())));
        assert_eq!(timescale(&moov), Some(90_000));
        let v1 = [vec![1, 0, 0, 0], vec![0; 16], 15_360u32.to_be_bytes().to_vec(), vec![0; 12]].concat();
        let moov = boxed(b"moov", &boxed(b"trak", &boxed(b"mdia", &boxed(b"mdhd", &v1))));
        assert_eq!(timescale(&moov), Some(15_360));
        assert_eq!(timescale(&boxed(b"moov", &[])), None);
    }

    #[test]
    fn the_decode_time_is_read_from_tfdt() {
        let tfdt = [vec![1, 0, 0, 0], 123_456_789_012u64.to_be_bytes().to_vec()].concat();
        let moof = boxed(
            b"moof",
            &[boxed(b"mfhd", &[0; 8]), boxed(b"traf", &[boxed(b"tfhd", &[0; 8]), boxed(b"tfdt", &tfdt)].concat())]
                .concat(),
        );
        assert_eq!(decode_time(&moof), Some(123_456_789_012));
        let short = boxed(b"moof", &boxed(b"traf", &boxed(b"tfdt", &[0, 0, 0, 0, 0, 1])));
        assert_eq!(decode_time(&short), None, "cut short");
    }

    #[test]
    fn durations_come_from_the_next_fragment_and_the_last_repeats() {
        assert_eq!(durations(&[Some(0), Some(15_360), Some(23_040)], Some(15_360), 1.0), [1.0, 0.5, 0.5]);
        assert_eq!(durations(&[Some(0)], Some(15_360), 1.0), [1.0]);
        assert_eq!(durations(&[Some(0), None], None, 2.0), [2.0, 2.0]);
        assert!(durations(&[], None, 1.0).is_empty());
    }
}
