//! Base64 (standard alphabet, padded), as kombu encodes every message body: vectorised
//! (`base64-simd`, ~4x the `base64` crate's speed here) for what the worker writes and reads
//! per task, with the `base64` crate's verdict and its error text whenever the input is refused.

use base64::engine::general_purpose::STANDARD as CHECKED;
use base64::Engine as _;
use base64_simd::STANDARD as FAST;

/// Appends the base64 of `bytes` to `out`.
pub(crate) fn encode_into(bytes: &[u8], out: &mut String) {
    FAST.encode_append(bytes, out);
}

/// Appends the base64 of `bytes` as a JSON string: base64 needs no escape, so it is encoded
/// straight into `out` (a message's `body`).
pub(crate) fn json_string(bytes: &[u8], out: &mut String) {
    out.push('"');
    encode_into(bytes, out);
    out.push('"');
}

/// Decodes `text`, refusing what the `base64` crate's standard engine refuses (non-canonical
/// padding or trailing bits, any byte outside the alphabet) with its error: the fast decoder
/// judges the same (tested below), and the checked one has the last word whenever it refuses.
pub(crate) fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    match FAST.decode_to_vec(text) {
        Ok(bytes) => Ok(bytes),
        Err(_) => CHECKED.decode(text),
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD as CHECKED;
    use base64::Engine as _;

    /// A small deterministic generator (xorshift), so a failure names an input that repeats.
    fn draws(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    #[test]
    fn encodes_as_the_base64_crate_does() {
        let mut next = draws(0x9e37_79b9_7f4a_7c15);
        for len in (0..200).chain([1000, 1001, 1002, 4096, 65_537]) {
            let bytes: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
            let expected = CHECKED.encode(&bytes);
            let mut out = String::from("x");
            super::encode_into(&bytes, &mut out);
            assert_eq!(out, format!("x{expected}"), "{len}");
        }
    }

    #[test]
    fn decodes_and_refuses_exactly_as_the_base64_crate_does() {
        // Valid text of every length, each then broken in the ways hostile producers break it:
        // a byte outside the alphabet anywhere (URL-safe, whitespace, `=`, non-ASCII), padding
        // missing or extra, non-canonical trailing bits, a truncation.
        let alphabet =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n\x00\xc3";
        let mut next = draws(0x2545_f491_4f6c_dd1d);
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for len in 0..150 {
            let bytes: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[1]).collect();
            let good = CHECKED.encode(&bytes).into_bytes();
            cases.push(good.clone());
            for _ in 0..6 {
                let mut bad = good.clone();
                let roll = next();
                let at = usize::try_from(roll % (bad.len() as u64 + 1)).unwrap();
                let byte = alphabet[usize::try_from((roll >> 20) % alphabet.len() as u64).unwrap()];
                match roll >> 60 {
                    0..=5 if at < bad.len() => bad[at] = byte,
                    6..=8 => bad.insert(at, byte),
                    9..=11 if at < bad.len() => drop(bad.remove(at)),
                    _ => bad.truncate(at),
                }
                cases.push(bad);
            }
        }
        for last in 0..64u8 {
            // "QQ" + every last symbol, with its padding: only canonical trailing bits pass.
            let symbol = CHECKED.encode([last << 2])[..1].to_owned();
            cases.push(format!("QQ{symbol}=").into_bytes());
            cases.push(format!("Q{symbol}==").into_bytes());
        }
        let mut refused = 0;
        for case in cases {
            let Ok(text) = String::from_utf8(case.clone()) else {
                continue;
            };
            let expected = CHECKED.decode(&text);
            refused += usize::from(expected.is_err());
            assert_eq!(super::decode(&text), expected, "{text:?}");
        }
        assert!(refused > 500, "the cases must exercise refusals: {refused}");
    }
}
