//! The claim script's word on each entry it took, read from its reply.

/// What the claim script says of one entry besides the entry itself (see `lua/claim.lua`):
/// `<list> <deliveries> <tag>` for a message it now holds, `<list> ! <reason>` for one it
/// dead-lettered; `list` counts the lists passed from 1.
pub(super) struct About<'a> {
    pub(super) list: usize,
    /// `None` for a dead letter.
    pub(super) deliveries: Option<u32>,
    /// The tag, or the reason.
    pub(super) rest: &'a [u8],
}

impl<'a> About<'a> {
    pub(super) fn read(about: &'a [u8]) -> Option<Self> {
        let mut fields = about.splitn(3, |&b| b == b' ');
        let list = number(fields.next()?)?;
        let deliveries = match fields.next()? {
            b"!" => None,
            // The script's count is an integer; anything else counts as past every limit.
            n => Some(number(n).unwrap_or(u32::MAX)),
        };
        Some(About {
            list,
            deliveries,
            rest: fields.next()?,
        })
    }
}

fn number<T: std::str::FromStr>(field: &[u8]) -> Option<T> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

pub(super) fn malformed_claim() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "the claim script answered in an unexpected shape",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(about: &[u8]) -> Option<(usize, Option<u32>, Vec<u8>)> {
        About::read(about).map(|a| (a.list, a.deliveries, a.rest.to_vec()))
    }

    #[test]
    fn a_held_message_names_its_list_count_and_tag_a_dead_letter_its_reason() {
        assert_eq!(
            read(b"2 1 abc-def.lease"),
            Some((2, Some(1), b"abc-def.lease".to_vec()))
        );
        // A tag may hold spaces (any producer chooses it): it is all the rest.
        assert_eq!(read(b"1 3 a b c"), Some((1, Some(3), b"a b c".to_vec())));
        assert_eq!(
            read(b"4 ! message is larger than 10 bytes"),
            Some((4, None, b"message is larger than 10 bytes".to_vec()))
        );
        // A count that is not a small integer is past every limit, not a first delivery.
        assert_eq!(read(b"1 1e+15 t"), Some((1, Some(u32::MAX), b"t".to_vec())));
        for junk in [&b""[..], b"1", b"1 1", b"x 1 t", b"-1 1 t"] {
            assert_eq!(read(junk), None, "{junk:?}");
        }
    }
}
