//! One call of a batched script: its keys and arguments, kept end to end in a buffer each.

/// One call of the batched script: its keys and arguments, as the script alone takes them.
#[derive(Debug)]
pub struct Call {
    pub(super) keys: Parts,
    pub(super) args: Parts,
}

impl Default for Call {
    /// Room for a task end's keys and a kilobyte of arguments.
    fn default() -> Self {
        Call::with_room(1024)
    }
}

impl Call {
    /// Room for a task end's keys and `args` bytes of arguments: a caller that knows what it
    /// will add (the envelopes a task sends on) sizes the buffer once instead of growing it.
    pub fn with_room(args: usize) -> Self {
        Call {
            keys: Parts::with_capacity(512, 16),
            args: Parts::with_capacity(args, 16),
        }
    }

    /// Adds a key (`KEYS[n]` of the call).
    pub fn key(&mut self, key: impl AsRef<str>) -> &mut Self {
        self.keys.push(key.as_ref());
        self
    }

    /// Adds an argument (`ARGV[n]` of the call).
    pub fn arg(&mut self, arg: impl CallArg) -> &mut Self {
        arg.write(&mut self.args.text);
        self.args.end();
        self
    }

    /// Bytes of its keys and arguments.
    pub(super) fn bytes(&self) -> usize {
        self.keys.text.len().saturating_add(self.args.text.len())
    }
}

/// Strings kept end to end in one buffer (a call's keys, or its arguments): a handful of
/// allocations a call instead of one per string.
#[derive(Debug)]
pub(super) struct Parts {
    text: String,
    /// Where each string ends in `text`.
    ends: Vec<usize>,
}

impl Parts {
    fn with_capacity(bytes: usize, parts: usize) -> Self {
        Parts {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(parts),
        }
    }

    fn push(&mut self, part: &str) {
        self.text.push_str(part);
        self.end();
    }

    /// Ends the string written into `text` since the last one.
    fn end(&mut self) {
        self.ends.push(self.text.len());
    }

    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| self.text.get(start..end).unwrap_or_default())
    }
}

/// What a [`Call`]'s argument is made of: text, taken as it is (not through `Display`, which
/// cost a formatting pass per envelope), or an integer, in decimal (`itoa`: no formatting pass).
pub trait CallArg {
    /// Appends the argument as the script reads it.
    fn write(self, out: &mut String);
}

impl CallArg for &str {
    fn write(self, out: &mut String) {
        out.push_str(self);
    }
}

impl CallArg for &String {
    fn write(self, out: &mut String) {
        out.push_str(self);
    }
}

impl CallArg for String {
    fn write(self, out: &mut String) {
        out.push_str(&self);
    }
}

macro_rules! decimal_call_args {
    ($($t:ty),*) => {$(
        impl CallArg for $t {
            fn write(self, out: &mut String) {
                out.push_str(itoa::Buffer::new().format(self));
            }
        }
    )*};
}
decimal_call_args!(i64, u64, usize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_keeps_each_key_and_argument_apart_empty_ones_too() {
        let mut call = Call::default();
        call.key("k1").arg("").key(String::from("k2")).arg(-7i64);
        let owned = String::from("a\0b");
        call.arg(&owned).arg(usize::MAX).key("");
        assert_eq!(call.keys.iter().collect::<Vec<_>>(), ["k1", "k2", ""]);
        let max = usize::MAX.to_string();
        assert_eq!(
            call.args.iter().collect::<Vec<_>>(),
            ["", "-7", "a\0b", &max]
        );
        assert_eq!((call.keys.len(), call.args.len()), (3, 4));
        assert_eq!(call.bytes(), 4 + 2 + 3 + max.len());
        assert_eq!(Call::default().keys.iter().count(), 0);
    }
}
